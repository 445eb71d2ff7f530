#!/usr/bin/env python3
# sparse_plot.py: turns bench_sparse's CSV output into the speed-up table, break-even sparsities and an SVG plot (no plotting library needed).
# usage: python3 sparse_plot.py sparse.svg run1.csv [run2.csv ...] > table.md  (later runs override earlier rows)
import csv
import math
import sys

rows = {}
for path in sys.argv[2:]:
    with open(path) as f:
        lines = f.readlines()
    start = next(i for i, l in enumerate(lines) if l.startswith('name,'))
    for r in csv.DictReader(lines[start:]):
        if r.get('error_occurred') == 'true':
            continue
        rows[r['name'].strip('"')] = float(r['cpu_time'])  # CPU time: the machine is shared

levels = [50, 70, 80, 90, 95]
dense = {1: rows.get('gemv_f32/eigen/4096x4096'), 8: rows.get('gemm_f32/eigen/4096x4096x8'),
         64: rows.get('gemm_f32/eigen/4096x4096x64')}
series = [  # label, name pattern (with {s}), batch
    ('CSR fp32, batch 1', 'spmv_csr_f32/shrink/4096x4096_s{s}', 1),
    ('CSR fp32 general plan (gathers), batch 1', 'spmv_csr_f32/shrink_gather/4096x4096_s{s}', 1),
    ('CSR fp32, batch 8', 'spmm_csr_f32/shrink/4096x4096x8_s{s}', 8),
    ('CSR fp32, batch 64', 'spmm_csr_f32/shrink/4096x4096x64_s{s}', 64),
    ('CSR int8, batch 1', 'spmv_csr_int8/shrink/4096x4096_s{s}', 1),
    ('CSR int8, batch 64', 'spmm_csr_int8/shrink/4096x4096x64_s{s}', 64),
    ('BSR 1x4, batch 1', 'spmv_bsr1x4_f32/shrink/4096x4096_s{s}', 1),
    ('BSR 1x4, batch 64', 'spmm_bsr1x4_f32/shrink/4096x4096x64_s{s}', 64),
    ('BSR 1x4 int8, batch 1', 'spmv_bsr1x4_int8/shrink/4096x4096_s{s}', 1),
    ('BSR 1x4 int8 general plan (runs of 4), batch 1', 'spmv_bsr1x4_int8/shrink_general/4096x4096_s{s}', 1),
    ('BSR 1x4 int8, batch 64', 'spmm_bsr1x4_int8/shrink/4096x4096x64_s{s}', 64),
    ('BSR 4x4, batch 1', 'spmv_bsr4x4_f32/shrink/4096x4096_s{s}', 1),
    ('BSR 4x4, batch 64', 'spmm_bsr4x4_f32/shrink/4096x4096x64_s{s}', 64),
    ('BSR 8x1, batch 1', 'spmv_bsr8x1_f32/shrink/4096x4096_s{s}', 1),
    ('BSR 8x1, batch 64', 'spmm_bsr8x1_f32/shrink/4096x4096x64_s{s}', 64),
    ('Eigen sparse, batch 1', 'spmv_csr_f32/eigen_sparse/4096x4096_s{s}', 1),
]
points = {}
for label, pattern, batch in series:
    pts = []
    for s in levels:
        t = rows.get(pattern.format(s=s))
        if t and dense[batch]:
            pts.append((s, dense[batch] / t))
    points[label] = pts
nm = {1: rows.get('spmv_nm24_f32/shrink/4096x4096'), 64: rows.get('spmm_nm24_f32/shrink/4096x4096x64')}


def break_even(pts):
    if not pts:
        return 'n/a'
    if pts[0][1] >= 1:
        return f'<= {pts[0][0]} %'
    for (s0, v0), (s1, v1) in zip(pts, pts[1:]):
        if v0 < 1 <= v1:
            return f'{s0 + (1 - v0) * (s1 - s0) / (v1 - v0):.0f} %'
    return f'> {pts[-1][0]} %'


print('| format, batch | ' + ' | '.join(f's{s}' for s in levels) + ' | break-even sparsity |')
print('| --- |' + ' --- |' * (len(levels) + 1))
for label, pts in points.items():
    d = dict(pts)
    print(f'| {label} | ' + ' | '.join(f'{d[s]:.2f}x' if s in d else '' for s in levels) + f' | {break_even(pts)} |')
for b in (1, 64):
    if nm[b] and dense[b]:
        print(f'| N:M 2:4 (50 %), batch {b} | {dense[b] / nm[b]:.2f}x | | | | | {"<= 50 %" if dense[b] / nm[b] >= 1 else "never (fixed 50 %)"} |')

# ---- SVG: speed-up over Eigen dense against sparsity, one line per format and batch.
W, H, L, R, T, B = 760, 440, 60, 210, 30, 50
ymax = max([v for pts in points.values() for _, v in pts] + [2.0])
ticks = [0.25, 0.5, 1, 2, 4, 8, 16, 32, 64]
ticks = [t for t in ticks if t <= 2 * ymax]
lo, hi = math.log2(ticks[0]), math.log2(ticks[-1])


def px(s):
    return L + (s - 45) / (100 - 45) * (W - L - R)


def py(v):  # log2 axis
    return T + (1 - (math.log2(v) - lo) / (hi - lo)) * (H - T - B)


colors = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22',
          '#17becf', '#393b79', '#637939']
out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<text x="{L}" y="18" font-size="13">Speed-up over Eigen dense (gemv / gemm), 4096x4096, 1 thread (log scale; dashed = break-even)</text>']
for i in ticks:
    out.append(f'<line x1="{L}" x2="{W - R}" y1="{py(i):.1f}" y2="{py(i):.1f}" stroke="#ddd"/>')
    out.append(f'<text x="{L - 8}" y="{py(i) + 4:.1f}" text-anchor="end">{i}x</text>')
out.append(f'<line x1="{L}" x2="{W - R}" y1="{py(1):.1f}" y2="{py(1):.1f}" stroke="black" stroke-dasharray="4 3"/>')
for s in levels:
    out.append(f'<text x="{px(s):.1f}" y="{H - B + 18}" text-anchor="middle">{s} %</text>')
out.append(f'<text x="{(L + W - R) / 2}" y="{H - 10}" text-anchor="middle">sparsity</text>')
for n, (label, pts) in enumerate(points.items()):
    c = colors[n % len(colors)]
    if len(pts) > 1:
        out.append('<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>'.format(
            c, ' '.join(f'{px(s):.1f},{py(v):.1f}' for s, v in pts)))
    for s, v in pts:
        out.append(f'<circle cx="{px(s):.1f}" cy="{py(v):.1f}" r="3" fill="{c}"/>')
    out.append(f'<line x1="{W - R + 10}" x2="{W - R + 30}" y1="{T + 10 + 16 * n}" y2="{T + 10 + 16 * n}" stroke="{c}" stroke-width="2"/>')
    out.append(f'<text x="{W - R + 35}" y="{T + 14 + 16 * n}">{label}</text>')
for k, (b, t) in enumerate(nm.items()):
    if t and dense[b]:
        v = dense[b] / t
        out.append(f'<rect x="{px(50) - 4:.1f}" y="{py(v) - 4:.1f}" width="8" height="8" fill="black"/>')
        out.append(f'<text x="{px(50) + 8:.1f}" y="{py(v) + 4:.1f}">2:4, batch {b}</text>')
out.append('</svg>')
with open(sys.argv[1], 'w') as f:
    f.write('\n'.join(out) + '\n')
