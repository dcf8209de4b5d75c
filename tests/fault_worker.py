"""Worker of ``test_fault_injection.py``: kill CI-sized training runs at random moments and resume them.

Run as ``python tests/fault_worker.py REPORT.json WORKDIR KILLS SEED``. This process imports
everything once and runs the uninterrupted reference run itself, single-threaded
(``OMP_NUM_THREADS=1``: no thread pool exists, so forking afterwards is safe, and warm caches make
the children fast). Every other training run is a ``fork()`` of it. It writes a JSON report; the
test asserts on it:

- ``reference``: the final model of the uninterrupted run (tensors as lists), its metrics;
  ``forked_equal``: whether an uninterrupted forked run gave the same parameters (it also times a run);
- ``events``: for every kill, the signal, the delay, the exit status, and the problems found by
  :func:`check_folder` right after the kill (an empty list when the folder is consistent);
- ``chains``: per run folder (killed and resumed until a run completed): its final status, problems,
  final model and metrics.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import matplotlib  # noqa: E402  imported before forking, so children start fast

matplotlib.use("Agg")
import matplotlib.pyplot  # noqa: E402,F401
import numpy as np  # noqa: E402
import sklearn.datasets  # noqa: E402,F401
import torch  # noqa: E402

from snntorch_egru import nir as senir  # noqa: E402
from snntorch_egru.training import main  # noqa: E402
from snntorch_egru.training._loop import load_checkpoint  # noqa: E402

ARGS = [
    "--hidden-size",
    "8",
    "--batch-size",
    "16",
    "--limit-train",
    "32",
    "--limit-test",
    "16",
    "--eval-batch-size",
    "16",
    "--epochs",
    "6",
    "--no-progress",
    "--seed",
    "11",
    "--dropconnect",
    "0.1",
]
NAMED = ("checkpoint.pt", "metrics.json", "model.nir", "activity.png")


def _child(argv):
    pid = os.fork()
    if pid == 0:  # the training run
        code = 1
        # Ctrl-C as in a terminal, also when this worker was started with SIGINT ignored (a shell's
        # background job inherits SIG_IGN, and Python then installs no KeyboardInterrupt handler)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            torch.set_num_threads(1)
            code = main(argv)
        except KeyboardInterrupt:  # SIGINT before main() took over (fork start-up): Python's own status
            code = 130
        except BaseException:
            code = 3
        finally:
            os._exit(code)
    return pid


def _wait(pid):
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _argv(out):
    if os.path.exists(os.path.join(out, "checkpoint.pt")):
        return ["--resume", out, "--no-progress"]
    return ["--out", out, *ARGS]


def check_folder(out):
    """Problems of a run folder (empty list: consistent). Every named file is complete; metrics.json,
    model.nir and activity.png describe the checkpoint beside them."""
    problems = []
    if not os.path.isdir(out):
        return problems
    present = set(os.listdir(out))
    ckpt = None
    if "checkpoint.pt" in present:
        try:
            ckpt = load_checkpoint(os.path.join(out, "checkpoint.pt"))
        except Exception as err:  # noqa: BLE001
            return [f"checkpoint.pt unreadable: {err}"]
        if len(ckpt["history"]) != ckpt["epoch"]:
            problems.append(f"checkpoint epoch {ckpt['epoch']} with {len(ckpt['history'])} history rows")
    for name in ("metrics.json", "model.nir", "activity.png"):
        if name in present and ckpt is None:
            problems.append(f"{name} without a checkpoint")
    if ckpt is None:
        return problems
    if "metrics.json" in present:
        try:
            with open(os.path.join(out, "metrics.json")) as f:
                m = json.loads(f.read(), parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
        except Exception as err:  # noqa: BLE001
            return problems + [f"metrics.json unreadable: {err}"]
        if m["epochs_completed"] != ckpt["epoch"]:
            problems.append(
                f"metrics.json describes epoch {m['epochs_completed']}, checkpoint is epoch {ckpt['epoch']}"
            )
        if [h["epoch"] for h in m["history"]] != [h["epoch"] for h in ckpt["history"]]:
            problems.append("metrics.json history differs from the checkpoint's")
        for kind, path in m["files"].items():
            if path is not None and not os.path.exists(path):
                problems.append(f"metrics.json lists {kind} {path} which is missing")
    if "model.nir" in present:
        try:
            graph = senir.read(os.path.join(out, "model.nir"))
            node = [n for n in graph.nodes.values() if isinstance(n, senir.EGRU)][0]
            # the exported model is the tested one: the best validation epoch's (kept in the checkpoint)
            tested = (ckpt.get("best") or {}).get("model") or ckpt["model"]
            if not np.array_equal(node.weight_hh, tested["egru.weight_hh_l0"].numpy()):
                problems.append("model.nir holds other weights than the tested model of checkpoint.pt")
        except Exception as err:  # noqa: BLE001
            problems.append(f"model.nir unreadable: {err}")
    if "activity.png" in present:
        with open(os.path.join(out, "activity.png"), "rb") as f:
            data = f.read()
        if not (data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(b"IEND\xaeB`\x82")):
            problems.append("activity.png is not a complete PNG")
    return problems


def _finished_metrics(run):
    """Whether ``run`` holds the metrics.json of a finished run (an unfinished run's progress file says
    ``"finished": false``)."""
    try:
        with open(os.path.join(run, "metrics.json")) as f:
            return json.load(f).get("finished") is not False
    except (OSError, ValueError):
        return False


#: Kills per run folder at most; the next resume then runs to its end. Each kill's window is drawn from the
#: timings of one uninterrupted run, and a machine that turns slower for a while (other tenants of a shared
#: host) can make every resumed run outlast its window: the chain would never complete (seen once in CI).
MAX_KILLS_PER_CHAIN = 8


def main_worker(report, workdir, kills, seed):
    rng = random.Random(seed)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    ref = os.path.join(workdir, "reference")
    devnull = open(os.devnull, "w")
    saved = sys.stdout
    sys.stdout = devnull
    try:
        status = main(["--out", ref, *ARGS])
    finally:
        sys.stdout = saved
    out = {"reference_status": status, "events": []}
    ck = torch.load(os.path.join(ref, "checkpoint.pt"), weights_only=True)
    out["reference"] = {k: v.tolist() for k, v in ck["model"].items()}
    with open(os.path.join(ref, "metrics.json")) as f:
        out["reference_metrics"] = json.load(f)
    t1 = time.perf_counter()
    forked = os.path.join(workdir, "forked")
    pid = _child(["--out", forked, *ARGS])
    t_first = None
    while True:  # time to the first checkpoint: start-up plus one epoch
        done_pid, status = os.waitpid(pid, os.WNOHANG)
        if t_first is None and os.path.exists(os.path.join(forked, "checkpoint.pt")):
            t_first = time.perf_counter() - t1
        if done_pid:
            break
        time.sleep(0.005)
    out["forked_status"] = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    t_full = out["t_full_s"] = time.perf_counter() - t1
    out["t_first_checkpoint_s"] = t_first = t_first or t_full / 2
    ck2 = torch.load(os.path.join(forked, "checkpoint.pt"), weights_only=True)
    out["forked_equal"] = all(torch.equal(ck["model"][k], ck2["model"][k]) for k in ck["model"])
    # time of a run left with k epochs: fixed part (start, final evaluation, files) + k epochs
    with open(os.path.join(forked, "metrics.json")) as f:
        fm = json.load(f)
    epochs = fm["epochs"]
    t_epoch = sum(h["time_s"] for h in fm["history"]) / epochs
    t_fixed = max(t_full - epochs * t_epoch, 0.1)
    # chains: one run folder killed and resumed until a run completes, then the next folder
    out["chains"] = []
    i = 0
    while sum(e["status"] != 0 for e in out["events"]) < kills and len(out["chains"]) < kills:
        run = os.path.join(workdir, f"killed{len(out['chains'])}")
        code, final_kills, attempt = None, 0, 0
        while code != 0 and i < 4 * kills:
            attempt += 1
            argv = _argv(run)
            done = 0
            if argv[0] == "--resume":
                done = load_checkpoint(os.path.join(run, "checkpoint.pt"))["epoch"]
            sig = signal.SIGINT if i % 4 == 3 else signal.SIGKILL
            i += 1
            if attempt == 1 and len(out["chains"]) % 2 == 0:  # even chains: first kill before the 1st checkpoint
                delay = rng.uniform(0.0, 0.7 * t_first)
            elif attempt == 1:  # odd chains: first kill while training (after the 1st checkpoint)
                delay = rng.uniform(t_first, t_first + (epochs - 1) * t_epoch)
            else:
                delay = rng.uniform(0.0, 1.1 * (t_fixed + (epochs - done) * t_epoch))
            if done == epochs:  # only the final evaluation and files are left: kill there 3 times at most
                final_kills += 1
                if final_kills > 3:
                    delay = None
            if attempt > MAX_KILLS_PER_CHAIN:  # a slow phase of the machine could outlast every kill window
                delay = None
            pid = _child(argv)
            if delay is not None:
                time.sleep(delay)
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            code = _wait(pid)
            after = None
            if os.path.exists(os.path.join(run, "checkpoint.pt")):
                after = load_checkpoint(os.path.join(run, "checkpoint.pt"))["epoch"]
            out["events"].append(
                {
                    "chain": len(out["chains"]),
                    "signal": int(sig),
                    "delay_s": delay,
                    "status": code,
                    "resumed": argv[0] == "--resume",
                    "epoch_before": done,
                    "epoch_after": after,
                    "metrics_after": _finished_metrics(run),
                    "problems": check_folder(run),
                }
            )
        chain = {"status": code, "problems": check_folder(run)}
        if code == 0:
            ck = torch.load(os.path.join(run, "checkpoint.pt"), weights_only=True)
            chain["final"] = {k: v.tolist() for k, v in ck["model"].items()}
            with open(os.path.join(run, "metrics.json")) as f:
                chain["metrics"] = json.load(f)
        chain["leftover_temporaries"] = [n for n in os.listdir(run) if n.endswith(".tmp")]
        out["chains"].append(chain)
    out["wall_s"] = time.perf_counter() - t0
    with open(report, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main_worker(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
