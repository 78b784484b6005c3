"""Ctrl-C at any moment of any console command ends it with exit 130 and one line on stderr, never a traceback.

Every ``[project.scripts]`` entry of pyproject.toml is run as pip's console-script wrapper runs it (the same
three lines), in its own process group with SIGINT at its default (tests/train/test_run_lock.py says why), and the
whole group gets SIGINT as a terminal's Ctrl-C would send it, at four moments:

- ``start``: 10 ms after the process starts, while the interpreter itself starts. No project code has run yet:
  Python's default SIGINT action (killed by SIGINT, what a shell reports as 130) or, inside its initialisation,
  Python's own "Fatal Python error: init_sys_streams / init_import_site", or, while ``site`` runs the ``.pth``
  files, Python's one-word "KeyboardInterrupt" (exit 1). Each is accepted; a traceback through project code is not.
- ``imports``: as soon as the launcher module has been imported (``-X importtime`` reports each import as it
  completes): in pip's wrapper, or the command's heavy imports (torch, timm, onnx).
- ``parsing``: as soon as the command's module has been imported: argument parsing and the first work.
- ``work``: two seconds later, in the command's work (each command is given work that lasts longer).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import tomllib

import ibit_deploy
from ibit_deploy import errors
from ibit_deploy.cli.launch import COMMANDS

ROOT = Path(ibit_deploy.__file__).resolve().parent.parent
MOMENTS = ("start", "imports", "parsing", "work")
WORK_AFTER_IMPORT_S = 2.0
# pip's console-script wrapper (distlib's template), for the entry point MODULE:FUNC
WRAPPER = """import re
import sys
from {module} import {func}
if __name__ == "__main__":
    sys.argv[0] = re.sub(r"(-script\\.pyw|\\.exe)?$", "", sys.argv[0])
    sys.exit({func}())
"""


def console_scripts() -> dict[str, str]:
    """name -> "module:function", from pyproject.toml."""
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]


def _command_args(tmp: Path, checkpoint: Path, bundle: Path) -> dict[str, list[str]]:
    """Arguments that keep each command working for longer than the ``work`` moment."""
    train = ["--model", "ibit_test_patch4_28", "--data", "synthetic:4000", "--epochs", "1000", "--num-workers", "0",
             "--quiet"]
    return {
        "ibit-deploy": ["train", *train, "--out", str(tmp / "deploy")],
        "ibit-train": [*train, "--out", str(tmp / "train")],
        "ibit-eval": [str(checkpoint), "--split", "train", "--out", str(tmp / "eval")],
        "ibit-export": [str(checkpoint), "--precision", "fp32,fp16,int8", "--out", str(tmp / "export"), "--quiet"],
        "ibit-bench": [str(bundle), "--backends", "ort-cpu", "--batches", "1", "--seconds", "60", "--quiet",
                       "--out", str(tmp / "bench")],
        "ibit-masks": ["ibit_base_patch16_224", "--out", str(tmp / "masks.png")],
        "ibit-calibrate": ["--spec", "mnist5k", "--count", "4000", "--out", str(tmp / "calib.npz")],
        "ibit-distill-logits": [str(checkpoint), "--out", str(tmp / "teacher.npz")],
        "ibit-compare": ["--data", "synthetic:400", "--candidates", "ibit", "--steps", "100000", "--seeds", "0",
                         "--fractions", "1.0", "--out", str(tmp / "compare"), "--quiet"],
    }


class Child:
    """A console command in its own process group, its stderr read as it comes (``-X importtime`` included)."""

    def __init__(self, script: Path, args: list[str], cwd: Path) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([sys.executable, "-X", "importtime", str(script), *args], cwd=cwd, env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True,
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()
        with self.changed:
            self.lines.append(None)  # end of stream
            self.changed.notify_all()

    def wait_for_import(self, module: str, timeout: float = 180) -> bool:
        """Block until ``module`` has been imported (True) or the stream ended (False)."""
        pattern = re.compile(rf"^import time:.*\|\s*{re.escape(module)}$")
        with self.changed:
            return self.changed.wait_for(
                lambda: None in self.lines or any(pattern.match(x) for x in self.lines if x), timeout) \
                and None not in self.lines

    def interrupt(self) -> bool:
        """SIGINT to the whole group, as a terminal's Ctrl-C; whether the command was still running."""
        running = self.proc.poll() is None
        if running:
            os.killpg(self.proc.pid, signal.SIGINT)
        return running

    def finish(self, timeout: float = 120) -> tuple[int, list[str]]:
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.reader.join(timeout=30)
        return code, [x for x in self.lines if x is not None and not x.startswith("import time:")]


def run_moment(name: str, target: str, args: list[str], moment: str, tmp: Path) -> dict:
    """Start command ``name`` and Ctrl-C it at ``moment``; its exit code, stderr and whether it was running."""
    module, func = target.split(":")
    script = tmp / name
    script.write_text(WRAPPER.format(module=module, func=func), encoding="utf-8")
    child = Child(script, args, tmp)
    if moment == "start":
        time.sleep(0.01)
    else:
        reached = child.wait_for_import(module if moment == "imports" else COMMANDS[name])
        if moment == "work" and reached:
            time.sleep(WORK_AFTER_IMPORT_S)
    running = child.interrupt()
    code, err = child.finish()
    return {"command": name, "moment": moment, "running": running, "code": code, "stderr": err}


def _check(result: dict) -> str | None:
    """Why ``result`` is wrong, or None."""
    err = "\n".join(result["stderr"])
    where = f"{result['command']} at {result['moment']}: exit {result['code']}, stderr:\n{err}"
    if result["moment"] == "start":
        if f'File "{ROOT / "ibit_deploy"}' in err:
            return f"a traceback through project code at interpreter start: {where}"
        python_init = re.search(r"^Fatal Python error: init_\w+:", err, re.M)  # init_sys_streams, init_import_site
        # CPython's own report of a Ctrl-C while site runs the .pth files (before any project code): the one word,
        # exit 1, no traceback (seen on a fresh-clone CI run)
        python_site = result["code"] == 1 and err.strip() == "KeyboardInterrupt"
        if result["code"] not in (errors.INTERRUPTED, -signal.SIGINT) and not python_init and not python_site:
            return f"interpreter start: expected exit 130 or death by SIGINT: {where}"
        return None
    if not result["running"]:
        return f"the command ended before the signal (give it longer work): {where}"
    if result["code"] != errors.INTERRUPTED:
        return f"expected exit 130: {where}"
    if "Traceback" in err or "KeyboardInterrupt" in err:
        return f"a traceback: {where}"
    said = [x for x in result["stderr"] if re.match(r"^ibit-[a-z-]+( [a-z-]+)?: interrupted", x)]
    if len(said) != 1 or result["stderr"][-1] != said[0]:
        return f"expected one 'PROG: interrupted' line, last on stderr: {where}"
    return None


@pytest.fixture(scope="module")
def small_bundle(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ibit_deploy.export.pipeline import export_checkpoint

    out = tmp_path_factory.mktemp("interrupt") / "bundle"
    export_checkpoint(tiny_checkpoint, out)
    return out


def test_every_console_script_is_a_light_launcher():
    scripts = console_scripts()
    assert set(scripts) == set(COMMANDS)
    code = ("import sys, importlib\n"
            "for target in sys.argv[1:]:\n"
            "    module, func = target.split(':')\n"
            "    assert callable(getattr(importlib.import_module(module), func)), target\n"
            "heavy = sorted(m for m in ('torch', 'timm', 'torchvision', 'onnx', 'numpy') if m in sys.modules)\n"
            "print(','.join(heavy))\n")
    out = subprocess.run([sys.executable, "-c", code, *scripts.values()], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == ""


@pytest.mark.slow
def test_ctrl_c_at_any_moment_of_any_command_is_exit_130_without_a_traceback(tmp_path, tiny_checkpoint,
                                                                             small_bundle):
    scripts = console_scripts()
    args = _command_args(tmp_path, tiny_checkpoint, small_bundle)
    assert set(args) == set(scripts), "every console script needs arguments here"

    def one_command(name: str) -> list[dict]:
        results = []
        for moment in MOMENTS:
            where = tmp_path / f"{name}-{moment}"
            where.mkdir()
            results.append(run_moment(name, scripts[name], [a.replace(str(tmp_path), str(where))
                                                            for a in args[name]], moment, where))
        return results

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = [r for rs in pool.map(one_command, sorted(scripts)) for r in rs]
    problems = [p for p in map(_check, results) if p]
    assert not problems, "\n\n".join(problems)
    assert time.monotonic() - started < 600


def test_an_exception_a_ctrl_c_caused_is_still_an_interrupt(monkeypatch, capsys):
    """A KeyboardInterrupt that cut a library's import short can surface as another error (numpy's ``__getattr__``
    recursing over a half-imported module was seen here): after a Ctrl-C it is exit 130, not a bug report."""
    from ibit_deploy.cli import launch
    from ibit_deploy.cli.entry import cli_main

    @cli_main("ibit-test")
    def main(argv=None):
        raise RecursionError("maximum recursion depth exceeded")

    assert main([]) == errors.UNEXPECTED
    capsys.readouterr()
    monkeypatch.setattr(launch, "_pending", [signal.SIGINT])
    assert main([]) == errors.INTERRUPTED
    assert capsys.readouterr().err == "ibit-test: interrupted\n"


@pytest.mark.parametrize("name, ours", [("ibit-train", True), ("ibit-other-tool", False), ("python-app", False)])
def test_the_early_hold_is_kept_only_in_our_console_scripts(tmp_path, name, ours):
    """``import ibit_deploy`` holds Ctrl-C from its first statement in a program named ``ibit-*``; the launcher keeps
    the hold for our commands and gives any other program Python's own handler back, with a held Ctrl-C raised."""
    script = tmp_path / name
    script.write_text("import signal\nimport ibit_deploy.cli.launch as launch\n"
                      "h = signal.getsignal(signal.SIGINT)\n"
                      "print('defer' if h is launch._defer else 'default' if h is signal.default_int_handler else h)\n"
                      "import os\nos.kill(os.getpid(), signal.SIGINT)\nimport time\ntime.sleep(0.2)\nprint('alive')\n",
                      encoding="utf-8")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT)},
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    if ours:  # held for the launcher (never called here): the process goes on
        assert out.stdout.split() == ["defer", "alive"] and out.returncode == 0
    else:  # Python's default: KeyboardInterrupt at the kill
        assert out.stdout.split() == ["default"] and "KeyboardInterrupt" in out.stderr


def test_a_ctrl_c_held_early_in_another_program_is_raised_when_the_hold_is_given_back(tmp_path):
    from ibit_deploy.cli import launch

    root = sys.modules["ibit_deploy"]
    previous = signal.getsignal(signal.SIGINT)
    saved_argv = sys.argv
    try:
        signal.signal(signal.SIGINT, root._hold_early)
        sys.argv = [str(tmp_path / "ibit-not-a-command")]
        launch._pending.append(signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            launch._hold_sigint_until_launch()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler and not launch._pending
    finally:
        sys.argv = saved_argv
        launch._pending.clear()
        signal.signal(signal.SIGINT, previous)


def test_a_ctrl_c_python_had_to_ignore_is_delivered_again(tmp_path):
    """A KeyboardInterrupt raised inside a weakref callback is "ignored" by Python (seen: importlib's module-lock
    callback during an import, and the command then went on working); in our console scripts it comes back and ends
    the command with exit 130 and one line."""
    script = tmp_path / "ibit-train"
    script.write_text(
        "import signal, sys, time, weakref\n"
        "import ibit_deploy.cli.launch as launch\n"
        "def cb(ref):\n"
        "    launch._pending.append(signal.SIGINT)\n"
        "    raise KeyboardInterrupt  # what launch._interrupt raises, here where Python must ignore it\n"
        "class Thing: pass\n"
        "def main():\n"
        "    signal.signal(signal.SIGINT, launch._interrupt)\n"
        "    try:\n"
        "        ref = weakref.ref(Thing(), cb)  # the object dies at once: cb runs\n"
        "        time.sleep(5)\n"
        "        print('went on working')\n"
        "        return 0\n"
        "    except KeyboardInterrupt:\n"
        "        print('interrupted')\n"
        "        return 130\n"
        "sys.exit(main())\n", encoding="utf-8")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT)},
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert out.stdout.split() == ["interrupted"] and out.returncode == 130
    assert "Exception ignored" not in out.stderr
