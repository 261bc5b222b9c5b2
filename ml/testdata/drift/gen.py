#!/usr/bin/python3
"""Reference values for ml/drift, computed by SciPy.

Run with Debian's Python (it has SciPy 1.10.1):

    /usr/bin/python3 ml/testdata/drift/gen.py > ml/testdata/drift/scipy.json

A sample is either stored ({"values": [...]}) or generated ({"gen": {...}}):
the generator is splitmix64 from the seed; each value is the sum of `terms`
draws of the top 24 bits of a 64-bit output, with its low `quantum` bits
cleared (to make ties), plus `offset`, all divided by 2**24. Every step is
exact integer arithmetic and one division by a power of two, so Go rebuilds
the same floats bit for bit.
"""
import json
import sys

import numpy as np
import scipy
from scipy import stats
from scipy.spatial import distance

MASK = (1 << 64) - 1


def splitmix64(seed):
    state = seed & MASK
    while True:
        state = (state + 0x9E3779B97F4A7C15) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        yield z ^ (z >> 31)


def gen(seed, n, terms=1, offset=0, quantum=0):
    rng = splitmix64(seed)
    out = []
    for _ in range(n):
        total = 0
        for _ in range(terms):
            total += next(rng) >> 40
        total = (total >> quantum) << quantum
        out.append((total + offset) / 2**24)
    return out


def sample(spec):
    if "values" in spec:
        return list(map(float, spec["values"]))
    return gen(**spec["gen"])


def g(seed, n, terms=4, offset=0.0, quantum=0):
    return {"gen": {"seed": seed, "n": n, "terms": terms,
                    "offset": int(round(offset * 2**24)), "quantum": quantum}}


def stored(rng, n, loc=0.0, decimals=4):
    return {"values": [round(float(v), decimals) for v in rng.normal(loc, 1.0, n)]}


rng = np.random.default_rng(20240611)

ks_cases = [
    ("small n=5 m=7", stored(rng, 5), stored(rng, 7, 0.5)),
    ("small identical", {"values": [1, 2, 3, 4, 5]}, {"values": [1, 2, 3, 4, 5]}),
    ("small disjoint", {"values": [1, 2, 3, 4, 5]}, {"values": [6, 7, 8, 9, 10, 11, 12]}),
    ("exact n!=m", g(1, 60), g(2, 45, offset=0.3)),
    ("exact n!=m coprime", g(3, 101), g(4, 97)),
    ("exact n==m", g(5, 200), g(6, 200, offset=0.1)),
    ("exact n==m unshifted", g(7, 500), g(8, 500)),
    ("exact ties", {"values": [int(v) for v in rng.integers(0, 10, 80)]},
     {"values": [int(v) for v in rng.integers(0, 12, 120)]}),
    ("exact ties gen", g(9, 3000, quantum=20), g(10, 2000, quantum=20, offset=0.0625)),
    ("exact n=m=10000", g(11, 10000), g(12, 10000, offset=0.02)),
    ("exact 10000x9000 shifted", g(13, 10000), g(14, 9000, offset=0.05)),
    ("exact tiny p", g(15, 3000), g(16, 2000, offset=0.5)),
    ("asymp 12000x15000", g(17, 12000), g(18, 15000)),
    ("asymp 12000x15000 shifted", g(19, 12000), g(20, 15000, offset=0.02)),
    ("asymp 12000x15000 ties", g(21, 12000, quantum=16), g(22, 15000, quantum=16)),
    ("asymp 10001x50", g(23, 10001), g(24, 50)),
    ("asymp 10001x50 shifted", g(25, 10001), g(26, 50, offset=0.3)),
    ("asymp 10001x137 shifted", g(27, 10001), g(28, 137, offset=0.8)),
    ("asymp 10001x7 far", g(29, 10001), g(30, 7, offset=3.0)),
    ("asymp 20000x300", g(31, 20000), g(32, 300, offset=0.05)),
    ("asymp 20000x300 shifted", g(33, 20000), g(34, 300, offset=0.25)),
    ("asymp 20001x1", g(35, 20001), g(36, 1, offset=1.0)),
    ("asymp 20000x2000 shifted", g(37, 20000), g(38, 2000, offset=0.25)),
    ("asymp 20000x2000 far", g(39, 20000), g(40, 2000, offset=1.2)),
]

ks = []
for name, a, b in ks_cases:
    x, y = sample(a), sample(b)
    r = stats.ks_2samp(x, y, alternative="two-sided", method="auto")
    mode = "exact" if max(len(x), len(y)) <= 10000 else "asymp"
    ks.append({"name": name, "a": a, "b": b, "mode": mode,
               "statistic": float(r.statistic), "pvalue": float(r.pvalue)})

# kstwo.sf on a grid that reaches every branch of scipy's kolmogn.
kstwo = []
for n in [1, 2, 5, 12, 50, 140]:
    for x in [0.04, 0.09, 0.15, 0.3, 0.45, 0.6, 0.85, 0.95]:
        kstwo.append({"n": n, "x": x, "sf": float(stats.kstwo.sf(x, n))})
for n in [141, 1000, 90909, 150000, 1500000]:
    for c in [0.001, 0.05, 0.3, 0.75, 1.0, 2.0, 2.5, 10, 50, 300, 400]:
        x = float(np.sqrt(c / n))
        kstwo.append({"n": n, "x": x, "sf": float(stats.kstwo.sf(x, n))})
    for x in [0.7 / n, 0.5, 0.9, 1 - 0.5 / n]:
        kstwo.append({"n": n, "x": x, "sf": float(stats.kstwo.sf(x, n))})

wass_cases = [
    ("docs", {"values": [0, 1, 3]}, {"values": [5, 6, 8]}),
    ("small", stored(rng, 5), stored(rng, 7, 0.5)),
    ("ties", {"values": [int(v) for v in rng.integers(0, 10, 80)]},
     {"values": [int(v) for v in rng.integers(0, 12, 120)]}),
    ("n!=m", g(41, 3000), g(42, 2000, offset=0.1)),
    ("heavy", g(43, 20000, terms=1), g(44, 5000, terms=3, offset=-0.7)),
    ("same", g(45, 12000), g(46, 15000)),
]
wass = []
for name, a, b in wass_cases:
    x, y = sample(a), sample(b)
    wass.append({"name": name, "a": a, "b": b,
                 "distance": float(stats.wasserstein_distance(x, y))})

base40 = rng.integers(100, 1000, 40)
chi_cases = [
    ("docs 2x3", [[10, 10, 20], [20, 20, 20]]),
    ("2x2 yates", [[12, 5], [7, 9]]),
    ("2x2 small difference", [[10, 10], [10, 11]]),
    ("2x2 large", [[50210, 49790], [50390, 49610]]),
    ("2x5", [[30, 42, 51, 18, 9], [25, 60, 40, 30, 2]]),
    ("2x5 fractional", [[3.5, 12.25, 7, 1, 0.5], [4, 10, 9.75, 2, 1]]),
    ("2x4 zero column", [[10, 0, 20, 5], [15, 0, 12, 9]]),
    ("2x40 similar", [list(map(int, base40)),
                      list(map(int, base40 + rng.integers(-30, 30, 40)))]),
    ("2x3 tiny p", [[100, 10, 50], [10, 100, 50]]),
    ("2x1", [[5], [7]]),
]
chi = []
for name, t in chi_cases:
    arr = np.array(t, dtype=float)
    kept = arr[:, (arr != 0).any(axis=0)]  # scipy rejects an all-zero column
    r = stats.chi2_contingency(kept)
    chi.append({"name": name, "table": t, "statistic": float(r[0]),
                "pvalue": float(r[1]), "dof": int(r[2])})

js_cases = [
    ("docs", [1.0, 0.0], [0.5, 0.5]),
    ("docs disjoint", [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]),
    ("identical", [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]),
    ("counts", [10, 20, 30, 40], [12, 18, 35, 35]),
    ("with zeros", [5, 0, 7, 1, 0], [0, 3, 7, 2, 0]),
    ("random", list(map(float, rng.random(30))), list(map(float, rng.random(30)))),
]
js = []
for name, p, q in js_cases:
    js.append({"name": name, "p": p, "q": q,
               "distance": float(distance.jensenshannon(p, q))})

chi2_dist = []
for k in [1, 2, 3, 9, 39, 200, 5000]:
    for f in [0.01, 0.3, 1.0, 1.5, 3.0, 10.0]:
        x = k * f
        chi2_dist.append({"k": k, "x": x, "sf": float(stats.chi2.sf(x, k))})
    for q in [0.5, 0.9, 0.95, 0.99, 0.999999]:
        chi2_dist.append({"k": k, "q": q, "ppf": float(stats.chi2.ppf(q, k))})

json.dump({"scipy": scipy.__version__, "numpy": np.__version__, "ks": ks,
           "kstwo": kstwo, "wasserstein": wass, "chi2_contingency": chi,
           "jensenshannon": js, "chi2": chi2_dist},
          sys.stdout, indent=1)
sys.stdout.write("\n")
