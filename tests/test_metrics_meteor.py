"""Our METEOR 1.5 `-stdio` client gives the same corpus score as the jar's plain-text file mode that the WebNLG
and DART scripts run (`java -jar meteor-1.5.jar hyp refs -l en -norm -r N`)."""
from __future__ import annotations

import re
import subprocess

import pytest

from prefixtune.metrics.java import java_available, java_executable, meteor_jar
from prefixtune.metrics.meteor import shared_meteor

pytestmark = pytest.mark.skipif(not java_available(), reason="java not found: METEOR 1.5 needs a Java runtime")

HYPS = ["the cat sat on the mat .", "a dog is running in the park", "", "hello world",
        "the ataturk monument ( izmir ) is in turkey .", "Café costs £20 - 25 ."]
REFS = [["the cat sat on a mat .", "a cat was sitting on the mat .", "there is a cat on the mat ."],
        ["a dog runs in a park", "", ""],
        ["something", "else", ""],
        ["hello , world", "hi world", ""],
        ["the ataturk monument is located in izmir , turkey .", "", ""],
        ["the cafe costs £ 20 - 25 .", "cheap café", ""]]


def test_stdio_equals_file_mode_with_empty_references(tmp_path):
    hyp_file = tmp_path / "hyp.txt"
    ref_file = tmp_path / "refs.txt"
    hyp_file.write_text("".join(h + "\n" for h in HYPS), encoding="utf-8")
    ref_file.write_text("".join(r + "\n" for rs in REFS for r in rs), encoding="utf-8")
    jar = meteor_jar()
    out = subprocess.run([java_executable(), "-Xmx2G", "-jar", jar.name, str(hyp_file), str(ref_file), "-l", "en",
                          "-norm", "-r", "3"], cwd=jar.parent, capture_output=True, text=True, check=True).stdout
    file_mode = float(re.search(r"Final score:\s+(\S+)", out).group(1))
    meteor = shared_meteor()
    assert meteor.score(HYPS, REFS) == pytest.approx(file_mode, abs=1e-12)
    # more empty padding (DART: -r 8) does not change the best reference of any segment
    assert meteor.score(HYPS, [rs + [""] * 5 for rs in REFS]) == pytest.approx(file_mode, abs=1e-12)


def test_subset_scores_from_segment_statistics():
    meteor = shared_meteor()
    stats = [meteor.segment_stats(h, r) for h, r in zip(HYPS, REFS)]
    assert meteor.corpus_score(stats[:2]) == pytest.approx(meteor.score(HYPS[:2], REFS[:2]), abs=1e-12)
    assert meteor.score(["the same words"], [["the same words"]]) > 0.99
