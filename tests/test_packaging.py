"""The package as users install it: complete, without import cycles, with
its gin files (a non-editable install resolves `include` lines too)."""

import ast
import os
import subprocess
import sys
import tomllib
import zipfile

import pytest

from conftest import REPO

PACKAGE = os.path.join(REPO, "avid_tf")


def _modules():
  """{module name: path} of every module of the package."""
  modules = {}
  for root, _, names in os.walk(PACKAGE):
    for name in names:
      if name.endswith(".py"):
        path = os.path.join(root, name)
        relative = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
        modules[relative.removesuffix(".__init__")] = path
  return modules


def _imports(path, modules):
  """The avid_tf modules a module imports, anywhere in its body."""
  tree = ast.parse(open(path).read())
  found = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module:
      names = [f"{node.module}.{alias.name}" for alias in node.names]
      names.append(node.module)
    else:
      continue
    for name in names:
      while name and name not in modules:
        name = name.rpartition(".")[0]
      if name.startswith("avid_tf."):
        found.add(name)
  return found


def test_no_module_imports_run_back_up():
  modules = _modules()
  graph = {name: _imports(path, modules) - {name}
           for name, path in modules.items()}
  # Packages only hold docstrings; a cycle through one is not an import of
  # its modules.
  packages = {name for name, path in modules.items()
              if path.endswith("__init__.py")}
  graph = {name: edges - packages for name, edges in graph.items()}
  visiting, done, cycles = set(), set(), []

  def visit(name, path):
    visiting.add(name)
    for other in sorted(graph[name]):
      if other in visiting:
        cycles.append(path[path.index(other):] + [other])
      elif other not in done:
        visit(other, path + [other])
    visiting.discard(name)
    done.add(name)

  for name in sorted(graph):
    if name not in done:
      visit(name, [name])
  assert not cycles, cycles


def test_every_package_is_listed_for_installation():
  with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
    listed = set(tomllib.load(f)["tool"]["setuptools"]["packages"])
  on_disk = {name for name, path in _modules().items()
             if path.endswith("__init__.py")}
  assert on_disk | {"avid_tf.gin"} == listed


@pytest.fixture(scope="module")
def installed_copy(tmp_path_factory):
  """The wheel's files unpacked, as a non-editable install holds them."""
  root = tmp_path_factory.mktemp("wheel")
  subprocess.run(
      [sys.executable, "-m", "pip", "wheel", "--no-deps",
       "--no-build-isolation", "-q", "-w", str(root), REPO], check=True,
      capture_output=True, timeout=600)
  wheel = [n for n in os.listdir(root) if n.endswith(".whl")][0]
  target = root / "site"
  with zipfile.ZipFile(root / wheel) as archive:
    archive.extractall(target)
  return str(target)


def test_installed_gin_files_resolve_their_includes(installed_copy, tmp_path):
  assert os.path.isfile(os.path.join(installed_copy, "avid_tf", "gin",
                                     "avid", "kinetics_cross.gin"))
  code = (
      "import os, gin\n"
      "from avid_tf.training import gin_utils\n"
      "from avid_tf.training import train_lib\n"
      "assert gin_utils.GIN_ROOT.startswith(os.environ['INSTALLED'])\n"
      "gin_utils.parse_gin([os.path.join(gin_utils.GIN_ROOT, 'cma', "
      "'kinetics_consensus.gin')])\n"
      "print(gin.query_parameter('build_avid_objective.num_negatives'),"
      " gin.query_parameter('build_cma_objective.agreement'))\n")
  result = subprocess.run(
      [sys.executable, "-c", code], cwd=str(tmp_path), capture_output=True,
      text=True, timeout=300, check=False,
      env=dict(os.environ, PYTHONPATH=installed_copy,
               INSTALLED=installed_copy, TF_CPP_MIN_LOG_LEVEL="3"))
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.split() == ["1024", "consensus"]


def test_studies_and_benchmarks_are_not_installed(installed_copy):
  installed = set(os.listdir(installed_copy)) | {
      os.path.join("avid_tf", name)
      for name in os.listdir(os.path.join(installed_copy, "avid_tf"))}
  assert "avid_tf" in installed and os.path.join("avid_tf", "eval") in installed
  for name in ["studies", "benchmarks", os.path.join("avid_tf", "studies"),
               os.path.join("avid_tf", "benchmarks")]:
    assert name not in installed
