"""Time flow's converter against dcm2niix on the same DICOM folders, alternating runs.

compare.py --flow EXE --dcm2niix EXE --runs N [--threads T] NAME=DIR ...

Each run is a fresh process; wall time and peak RSS come from os.wait4. One warm-up run of
each tool per folder is discarded (page cache). Prints a Markdown table of medians.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time


def run(cmd, env=None):
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{cmd[0]} failed: {err}")
    return wall, usage.ru_maxrss / 1024.0  # MiB


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--flow", required=True)
    ap.add_argument("--dcm2niix", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="RAYON_NUM_THREADS for flow (0 = all cores)")
    ap.add_argument("datasets", nargs="+")
    a = ap.parse_args()
    env = dict(os.environ)
    if a.threads:
        env["RAYON_NUM_THREADS"] = str(a.threads)
    print("| series | files | flow median s | dcm2niix median s | ratio flow/dcm2niix | flow peak RSS MiB | dcm2niix peak RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    for spec in a.datasets:
        name, folder = spec.split("=", 1)
        files = len(os.listdir(folder))
        out = tempfile.mkdtemp(prefix="flow-bench-")
        try:
            flow_cmd = [a.flow, folder, os.path.join(out, "flow.nii")]
            d2n_cmd = [a.dcm2niix, "-z", "n", "-b", "n", "-f", "ref", "-o", out, folder]
            run(flow_cmd, env)
            run(d2n_cmd)
            f_t, d_t, f_m, d_m = [], [], [], []
            for _ in range(a.runs):
                t, m = run(flow_cmd, env)
                f_t.append(t)
                f_m.append(m)
                for f in os.listdir(out):
                    if f.startswith("ref"):
                        os.remove(os.path.join(out, f))
                t, m = run(d2n_cmd)
                d_t.append(t)
                d_m.append(m)
            fm, dm = statistics.median(f_t), statistics.median(d_t)
            print(f"| {name} | {files} | {fm:.3f} | {dm:.3f} | {fm / dm:.2f} | {max(f_m):.0f} | {max(d_m):.0f} |")
        finally:
            shutil.rmtree(out)


if __name__ == "__main__":
    main()
