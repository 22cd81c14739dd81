"""Run many (variant, seed) trainings in parallel, one thread each; print compact lines.

    STEPS=2000 SEEDS="0 1 2 3 4" python research/sweep.py default pre_ln      # variants x seeds
    python research/sweep.py default:2 closer1:4                            # name:seed pairs

Written for a machine with many cores (session 4 ran it on a lent 16-core machine); results go
to $OUT/sweep.jsonl (one JSON line per run) and one compact line each to stdout. In session 4 the
package copy it ran also had a switch back to two registers (MHA_REGISTERS=2: questions in lower
case); the package now always has three, so those rows of research/toy_lab_log.md are not
reproducible from this tree without that edit.
"""
import json, os, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor, as_completed

STEPS = int(os.environ.get("STEPS", 2000))
DEADLINE = float(os.environ.get("DEADLINE", 480))  # stop launching after this many seconds
WORKERS = int(os.environ.get("WORKERS", os.cpu_count()))
VARIANTS = [  # (name, environment, ToyConfig overrides); the defaults are session 4's choice
    ("default", {}, {}),
    ("pre_ln", {}, {"post_ln": False}),
    ("no_closer", {}, {"closer_loss": 0.0}),
    ("token", {}, {"neighbour_target": "token"}),
    ("closer1", {}, {"closer_loss": 1.0}),
    ("rs5", {}, {"relation_swap": 0.5}),
]
SEEDS = [int(s) for s in os.environ.get("SEEDS", "0 2 4").split()]
only = sys.argv[1:]
jobs = [(n, e, o, s) for s in SEEDS for (n, e, o) in VARIANTS if not only or n in only]
if only and ":" in only[0]:
    jobs = [(n, e, o, int(a.split(":")[1])) for a in only for (n, e, o) in VARIANTS if n == a.split(":")[0]]
# jobs run in list order: seed by seed, each seed's variants in the order of VARIANTS
start = time.time()
out = open(os.path.join(os.environ.get("OUT", "."), "sweep.jsonl"), "a")

def run(job):
    name, env, over, seed = job
    if time.time() - start > DEADLINE:
        return None
    e = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", **env)
    r = subprocess.run([sys.executable, "research/sweep_one.py", name, str(seed), str(STEPS), json.dumps(over)],
                       env=e, capture_output=True, text=True)
    lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
    return lines[-1] if lines else json.dumps({"name": name, "seed": seed, "error": r.stderr[-300:]})

print(f"{len(jobs)} jobs, {WORKERS} workers, steps {STEPS}", flush=True)
with ThreadPoolExecutor(WORKERS) as pool:
    for f in as_completed([pool.submit(run, j) for j in jobs]):
        line = f.result()
        if line is None:
            continue
        out.write(line + "\n"); out.flush()
        d = json.loads(line)
        if "error" in d:
            print("ERR", d["name"], d["seed"], d["error"], flush=True); continue
        b, a = d["best"], d["acc"]
        print(f'{time.time()-start:5.0f}s {d["name"]:16s} s{d["seed"]} {d["s"]:5.0f}s '
              + " ".join(f"{k[:3]}={v:.2f}" for k, v in b.items()) + " | "
              + " ".join(f"{v:.2f}" for v in a.values()) + f' | ctl {max(d["control"].values()):.2f} '
              + ("PASS" if d["pass"] else ""), flush=True)
