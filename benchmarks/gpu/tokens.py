#!/usr/bin/env python3
"""tokens.py PATH VOCAB N_SEQ SEQ_LEN SEED — a birdbone token file (io/tokens.h: "BBTK", version 1, vocab,
n_seq, seq_len, int32 ids) of Zipf-distributed ids (frequency ~ rank^-1.1 over a seeded permutation of the
vocabulary), BOS (id 1) first in every sequence. For the large synthetic shapes, whose self-sampled streams
would need a CPU decode through the whole model on every rank: calibration and evaluation files from two seeds."""
import bisect, os, random, struct, sys

path, vocab, n_seq, seq_len, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rng = random.Random(seed)
perm = list(range(vocab))
rng.shuffle(perm)
cdf, c = [], 0.0
for k in range(1, vocab + 1):
    c += k ** -1.1
    cdf.append(c)
ids = []
for s in range(n_seq):
    ids.append(1)
    for t in range(seq_len - 1):
        ids.append(perm[min(bisect.bisect_left(cdf, rng.random() * c), vocab - 1)])
tmp = path + ".tmp"
with open(tmp, "wb") as f:
    f.write(b"BBTK" + struct.pack("<IIII", 1, vocab, n_seq, seq_len))
    f.write(struct.pack("<%di" % len(ids), *ids))
os.replace(tmp, path)
