"""Every script answers --help in a fresh process, with status 0.

The scripts' behaviour is tested in-process (`conftest.run_script`) by the
tests of what they run; this checks what only a fresh process shows: the
script imports and defines its flags on its own. The converter's --help is
tested without PyTorch in tests/test_convert.py.
"""

import os
import subprocess
import sys

import pytest

from conftest import REPO
from conftest import script_env

SCRIPTS = sorted(name for name in os.listdir(os.path.join(REPO, "scripts"))
                 if name.endswith(".py")
                 and name != "convert_pytorch_checkpoint.py")


@pytest.mark.slow
@pytest.mark.parametrize("name", SCRIPTS)
def test_help_lists_the_flags_and_exits_0(name):
  path = os.path.join(REPO, "scripts", name)
  result = subprocess.run([sys.executable, path, "--help"], env=script_env(),
                          capture_output=True, text=True, timeout=300,
                          check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  with open(path) as f:
    summary = f.read().split('"""')[1].strip().splitlines()[0]
  assert result.stdout.startswith(summary)
  assert f"{path}:" in result.stdout or f"scripts/{name}:" in result.stdout
  assert "Traceback" not in result.stderr
