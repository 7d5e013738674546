"""prefixtune: a reproduction of Prefix-Tuning (Li & Liang, ACL 2021) and its PEFT siblings."""

__version__ = "0.1.0"
