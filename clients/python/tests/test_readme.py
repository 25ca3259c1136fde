"""The README's ```python blocks run, each in a fresh interpreter, so the docs cannot drift."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import unittest
from pathlib import Path

from tests import support

support.setup_mode()

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.MULTILINE | re.DOTALL)


class ReadmeTest(unittest.TestCase):
    def test_there_are_examples(self) -> None:
        self.assertGreaterEqual(len(BLOCKS), 5)

    def test_every_example_runs(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(support.SRC))
        for i, code in enumerate(BLOCKS):
            with self.subTest(block=i, first_line=code.splitlines()[0]):
                proc = subprocess.run(
                    [sys.executable, "-c", code], env=env, cwd=support.shared_tempdir(), capture_output=True, text=True, timeout=60
                )
                self.assertEqual(proc.returncode, 0, f"README block {i} failed:\n{code}\n--- stderr:\n{proc.stderr}")


if __name__ == "__main__":
    unittest.main()
