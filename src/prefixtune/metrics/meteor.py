"""METEOR 1.5 through one long-lived JVM (`java -jar meteor-1.5.jar - - -stdio -l en -norm`).

Definition followed: METEOR 1.5 (Denkowski & Lavie 2014), English, `-norm` (tokenise + lower-case +
normalise punctuation), default task `rank` parameters -- exactly the flags of the WebNLG challenge script
(`meteor_eval.sh`: `-l en -norm -r 3`) and of the DART script (`run_eval_on_dart.sh`: `-l en -norm -r 8`).

The scripts run the jar in plain-text file mode, which loads the 60 MB paraphrase table (~10 s) on every call.
We use the jar's `-stdio` protocol instead: `SCORE ||| ref_1 ||| ... ||| ref_n ||| hyp` returns the segment's
sufficient statistics (the stats of the best-scoring reference, as in file mode), and
`EVAL ||| stats_1 ||| ... ||| stats_k` sums them and returns the corpus score. File mode does the same thing
(`aggStats.addStats(...)`, then `computeMetrics`), so the scores are identical; `tests/test_metrics_meteor.py`
checks this against a file-mode run. One JVM serves any number of calls, and subsets (WebNLG seen/unseen) are
scored from the same segment statistics.
"""
from __future__ import annotations

import atexit
import functools
import subprocess
import tempfile
import threading
from collections.abc import Sequence

from prefixtune.metrics.java import meteor_jar, require_java


def _clean(text: str) -> str:
    # Stdio lines are split on '|||' and end at a newline; file mode has neither restriction. Neither can occur
    # in text that went through the WebNLG/DART pre-processing; elsewhere this is the only (documented) change.
    return " ".join(text.replace("|||", "| | |").split("\n"))


class MeteorStdio:
    """A METEOR 1.5 process speaking the `-stdio` SCORE/EVAL protocol."""

    def __init__(self, language: str = "en", norm: bool = True, max_heap: str = "2G"):
        java = require_java()
        jar = meteor_jar()
        cmd = [java, f"-Xmx{max_heap}", "-jar", jar.name, "-", "-", "-stdio", "-l", language]
        if norm:
            cmd.append("-norm")
        self._stderr = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(
            cmd, cwd=jar.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr
        )
        self._lock = threading.Lock()

    # -- protocol ------------------------------------------------------------------------------------------
    def _ask(self, line: str, n_answers: int = 1) -> list[str]:
        proc = self._proc
        if proc.poll() is not None:
            raise RuntimeError(f"METEOR process has exited ({proc.returncode}): {self._stderr_text()}")
        proc.stdin.write((line + "\n").encode("utf-8"))
        proc.stdin.flush()
        answers = []
        for _ in range(n_answers):
            out = proc.stdout.readline()
            if not out:
                raise RuntimeError(f"METEOR process died: {self._stderr_text()}")
            answers.append(out.decode("utf-8").strip())
        if answers and answers[0].startswith("Error"):
            raise RuntimeError(f"METEOR rejected the input line: {answers[0]}")
        return answers

    def _stderr_text(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")[-2000:]

    def segment_stats(self, hypothesis: str, references: Sequence[str]) -> str:
        """Sufficient statistics of `hypothesis` against its best reference (empty references allowed)."""
        if not references:
            raise ValueError("METEOR needs at least one reference per segment")
        line = " ||| ".join(["SCORE", *(_clean(r) for r in references), _clean(hypothesis)])
        with self._lock:
            return self._ask(line)[0]

    def corpus_score(self, stats: Sequence[str]) -> float:
        """Corpus-level METEOR from summed segment statistics."""
        if not stats:
            raise ValueError("no segments to score")
        with self._lock:
            answers = self._ask(" ||| ".join(["EVAL", *stats]), n_answers=len(stats) + 1)
        return float(answers[-1])

    def score(self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
        if len(hypotheses) != len(references):
            raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference sets")
        return self.corpus_score([self.segment_stats(h, r) for h, r in zip(hypotheses, references)])

    # -- lifetime ------------------------------------------------------------------------------------------
    def close(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            try:
                proc.stdin.close()
                proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait()
        stderr = getattr(self, "_stderr", None)
        if stderr is not None:
            stderr.close()

    def __enter__(self) -> MeteorStdio:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


@functools.lru_cache(maxsize=1)
def shared_meteor() -> MeteorStdio:
    """The process-wide METEOR JVM (started on first use, closed at interpreter exit)."""
    meteor = MeteorStdio()
    atexit.register(meteor.close)
    return meteor
