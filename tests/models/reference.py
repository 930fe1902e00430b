"""Plain reference implementations: one replica at a time, a Python loop over experts, columns and tasks, 2-D
matrix products on the explicit one-hot input. They read the fused model's parameters (slices of the same
leaf tensors), so forward values *and* gradients of both computations can be compared directly.

Written to mirror docs/science.md, "The architectures" line by line, not the fused code.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hpo.models import Features, MTLModel
from hpo.models._layers import InputLayer


def first_layer_parts(layer: InputLayer, onehot: Tensor, r: int) -> dict[str, Tensor]:
    """The input layer as a dense product of the one-hot input with the stacked weights, split into parts."""
    w = torch.cat([p[r] for p in (layer.weight_cont, layer.weight_cat) if p is not None], dim=0)
    out = onehot @ w
    if layer.bias is not None:
        out = out + layer.bias[r]
    parts, start = {}, 0
    for name, part in layer.parts.items():
        parts[name] = out[:, start : start + part.size]
        start += part.size
    return parts


def block(t: Tensor, i: int, width: int) -> Tensor:
    return t[:, i * width : (i + 1) * width]


def run_mlp(x: Tensor, layers, r: int, i: int) -> Tensor:  # type: ignore[no-untyped-def]
    for layer in layers:
        x = torch.relu(x @ layer.weight[r, i] + layer.bias[r, i])
    return x


def tower(x: Tensor, towers, r: int, k: int) -> Tensor:  # type: ignore[no-untyped-def]
    x = run_mlp(x, towers.hidden, r, k)
    return (x @ towers.output.weight[r, k] + towers.output.bias[r, k])[:, 0]


def softmax_plain(logits: Tensor) -> Tensor:
    e = torch.exp(logits - logits.max(dim=1, keepdim=True).values)
    return e / e.sum(dim=1, keepdim=True)


def dselect_plain(z: Tensor, w: Tensor, n: int, gamma: float) -> Tensor:
    """DSelect-k as Hazimeh et al. (NeurIPS 2021) write it, one example at a time.

    ``z`` ``(B, k, m)``: k single-expert selectors of m = ceil(log2 n) bits; ``w`` ``(B, k)``: their mixing logits.
    Expert j's code is j written in m binary digits (left to right); selector i gives expert j the product over
    digits of S(z_il) where the digit is 1 and 1 - S(z_il) where it is 0; the gate is sum_i softmax(w)_i times
    selector i. Experts beyond n are simply absent (no renormalisation).
    """
    b, k, m = z.shape

    def smooth(t: Tensor) -> Tensor:  # the paper's smooth step of one scalar, kept differentiable
        if t <= -gamma / 2:
            return t * 0
        if t >= gamma / 2:
            return t * 0 + 1
        return -2 / gamma**3 * t**3 + 3 / (2 * gamma) * t + 0.5

    rows = []
    for e in range(b):
        mixing = softmax_plain(w[e : e + 1])[0]
        weights = []
        for j in range(n):
            digits = format(j, f"0{m}b")
            total = z.new_zeros(())
            for i in range(k):
                prod = z.new_ones(())
                for bit, digit in enumerate(digits):
                    sv = smooth(z[e, i, bit])
                    prod = prod * (sv if digit == "1" else 1 - sv)
                total = total + mixing[i] * prod
            weights.append(total)
        rows.append(torch.stack(weights))
    return torch.stack(rows)


def dselect_gate_logits(
    model: MTLModel, parts: dict[str, Tensor], r: int, k: int, b: int
) -> tuple[Tensor, Tensor]:
    """Task k's selector codes ``(B, k, m)`` and mixing logits ``(B, k)``: read from the input layer (per-example
    gates) or from the model's static parameters."""
    gi = k if model.n_gates > 1 else 0
    kk, m = model.k, model.code_bits
    if model.gate == "static":
        z = model.z_static[r, gi].unsqueeze(0).expand(b, kk, m)
        w = model.w_static[r, gi].unsqueeze(0).expand(b, kk)
        return z, w
    return block(parts["gate_z"], gi, kk * m).reshape(b, kk, m), block(parts["gate_w"], gi, kk)


def moe_reference(model: MTLModel, onehot: Tensor, r: int) -> Tensor:
    parts = first_layer_parts(model.input, onehot, r)
    n, h0 = model.n_experts, model.expert_units[0]
    experts = [
        run_mlp(torch.relu(block(parts["experts"], i, h0)), model.experts.hidden, r, i) for i in range(n)
    ]
    outs = []
    for k in range(model.n_tasks):
        gi = k if model.n_gates > 1 else 0
        if model.name == "dselect_k":
            z, w = dselect_gate_logits(model, parts, r, k, onehot.shape[0])
            g = dselect_plain(z, w, n, model.gamma)
        else:
            g = softmax_plain(block(parts["gates"], gi, n))
        mixed = sum(g[:, i : i + 1] * experts[i] for i in range(n))
        outs.append(tower(mixed, model.towers, r, k))
    return torch.stack(outs, dim=1)


def ple_reference(model: MTLModel, onehot: Tensor, r: int) -> Tensor:
    K, ms, msh = model.n_tasks, model.n_specific, model.n_shared
    h0 = model.expert_units[0]
    E = K * ms + msh
    task_in: list[Tensor] = []
    shared_in: Tensor | None = None
    task_out: list[Tensor] = []
    for li, level in enumerate(model.levels):
        last = li == len(model.levels) - 1
        experts = []
        for e in range(E):
            owner = e // ms if e < K * ms else None  # task index, or None for shared
            if li == 0:
                parts = first_layer_parts(level.input, onehot, r)
                pre = block(parts["experts"], e, h0)
            else:
                src = task_in[owner] if owner is not None else shared_in
                pre = src @ level.expert_in.weight[r, e] + level.expert_in.bias[r, e]
            experts.append(run_mlp(torch.relu(pre), level.experts.hidden, r, e))
        task_out = []
        for k in range(K):
            if li == 0:
                logits = block(parts["task_gates"], k, ms + msh)
            else:
                logits = task_in[k] @ level.task_gates.weight[r, k] + level.task_gates.bias[r, k]
            g = softmax_plain(logits)
            own = [experts[k * ms + i] for i in range(ms)] + [experts[K * ms + i] for i in range(msh)]
            task_out.append(sum(g[:, j : j + 1] * own[j] for j in range(ms + msh)))
        if not last:
            if li == 0:
                logits = parts["shared_gate"]
            else:
                logits = shared_in @ level.shared_gate.weight[r, 0] + level.shared_gate.bias[r, 0]
            g = softmax_plain(logits)
            shared_in = sum(g[:, j : j + 1] * experts[j] for j in range(E))
            task_in = task_out
    return torch.stack([tower(task_out[k], model.towers, r, k) for k in range(K)], dim=1)


def columns_reference(model: MTLModel, onehot: Tensor, r: int) -> Tensor:
    parts = first_layer_parts(model.input, onehot, r)
    K, h0 = model.n_tasks, model.hidden_units[0]
    stitch = model.name == "cross_stitch"
    cols = [torch.relu(block(parts["columns"], k, h0)) for k in range(K)]

    def do_stitch(cols: list[Tensor], li: int) -> list[Tensor]:
        a = model.stitch[r, li]
        return [sum(a[k, j] * cols[j] for j in range(K)) for k in range(K)]

    if stitch:
        cols = do_stitch(cols, 0)
    for li, layer in enumerate(model.columns.hidden):
        cols = [torch.relu(cols[k] @ layer.weight[r, k] + layer.bias[r, k]) for k in range(K)]
        if stitch:
            cols = do_stitch(cols, li + 1)
    return torch.stack([tower(cols[k], model.head, r, k) for k in range(K)], dim=1)


def shared_bottom_reference(model: MTLModel, onehot: Tensor, r: int) -> Tensor:
    h = torch.relu(first_layer_parts(model.input, onehot, r)["bottom"])
    h = run_mlp(h, model.bottom.hidden, r, 0)
    return torch.stack([tower(h, model.towers, r, k) for k in range(model.n_tasks)], dim=1)


def tucker_slice(core: Tensor, u1: Tensor, u2: Tensor, u3: Tensor, k: int) -> Tensor:
    """W[:, :, k] = sum_{a,b,c} S[a,b,c] U1[:, a] U2[:, b] U3[k, c], written as explicit sums."""
    r1, r2, r3 = core.shape
    w = torch.zeros(u1.shape[0], u2.shape[0], dtype=core.dtype)
    for a in range(r1):
        for b in range(r2):
            coef = sum(core[a, b, c] * u3[k, c] for c in range(r3))
            w = w + coef * torch.outer(u1[:, a], u2[:, b])
    return w


def tensor_factorization_reference(model: MTLModel, onehot: Tensor, r: int) -> Tensor:
    K = model.n_tasks
    u1_first = torch.cat(
        [p[r] for p in (model.input.weight_cont, model.input.weight_cat) if p is not None], dim=0
    )
    hs = []
    for k in range(K):
        h = onehot
        for j, layer in enumerate(model.layers):
            u1 = u1_first if j == 0 else layer.u1[r]
            w = tucker_slice(layer.core[r], u1, layer.u2[r], layer.u3[r], k)
            h = torch.relu(h @ w + layer.bias[r, k])
        hs.append(tower(h, model.head, r, k))
    return torch.stack(hs, dim=1)


def adatt_reference(model: MTLModel, onehot: Tensor, r: int) -> Tensor:
    """AdaTT-sp as the authors' ``AdaTTSp.forward`` loops it: a list of experts (expert i reads the input of
    task i // m), one softmax gate per task over all experts, then the task's own experts added (weighted by
    its learned row when m > 1, as they are when m == 1)."""
    T, m = model.n_tasks, model.m
    E = T * m
    parts = first_layer_parts(model.input, onehot, r)
    h0 = model.expert_units[0]
    experts = [torch.relu(block(parts["experts"], i, h0)) for i in range(E)]
    gates = [softmax_plain(block(parts["gates"], t, E)) for t in range(T)]
    layers = [None, *zip(model.experts, model.gates)]
    inputs: list[Tensor] = []
    for level, pair in enumerate(layers):
        if pair is not None:
            expert_layer, gate_layer = pair
            experts = [
                torch.relu(inputs[i // m] @ expert_layer.weight[r, i] + expert_layer.bias[r, i])
                for i in range(E)
            ]
            gates = [
                softmax_plain(inputs[t] @ gate_layer.weight[r, t] + gate_layer.bias[r, t]) for t in range(T)
            ]
        fused = []
        for t in range(T):
            out = sum(gates[t][:, i : i + 1] * experts[i] for i in range(E))
            if model.residual and m == 1:
                out = out + experts[t]
            elif model.residual:
                out = out + sum(model.self_weights[r, level, t, j] * experts[t * m + j] for j in range(m))
            fused.append(out)
        inputs = fused
    return torch.stack([tower(inputs[t], model.towers, r, t) for t in range(T)], dim=1)


def esmm_reference(model: MTLModel, onehot: Tensor, r: int) -> Tensor:
    """ESMM as Ma et al. write it: towers on one shared embedding; a later binary task's probability is its own
    tower's times every earlier binary task's (pCTCVR = pCTR x pCVR), returned as a logit; regression towers as
    they are."""
    emb = first_layer_parts(model.input, onehot, r)["embedding"]
    outs, prob = [], None
    for k, task in enumerate(model.tasks):
        z = tower(emb, model.towers, r, k)
        if task.kind != "binary":
            outs.append(z)
            continue
        prob = torch.sigmoid(z) if prob is None else prob * torch.sigmoid(z)
        outs.append(torch.log(prob) - torch.log1p(-prob))
    return torch.stack(outs, dim=1)


def aitm_reference(model: MTLModel, onehot: Tensor, r: int) -> Tensor:
    """AITM as Xi et al. write it: towers on a shared embedding; from the second step, p = relu(transfer(q_prev)),
    w_u = softmax over u in [q_t, p] of <Q u, K u> / sqrt(d), q_t = sum_u w_u V u; a linear head per step."""
    emb = first_layer_parts(model.input, onehot, r)["embedding"]

    def lin(layer, i: int, v: Tensor) -> Tensor:  # type: ignore[no-untyped-def]
        return v @ layer.weight[r, i] + layer.bias[r, i]

    q = [run_mlp(emb, model.towers.hidden, r, 0)]
    for t in range(1, model.n_tasks):
        own = run_mlp(emb, model.towers.hidden, r, t)
        p = torch.relu(lin(model.transfer, t - 1, q[t - 1]))
        d = own.shape[1]
        scores = [(lin(model.query, t - 1, u) * lin(model.key, t - 1, u)).sum(1) / d**0.5 for u in (own, p)]
        w = softmax_plain(torch.stack(scores, dim=1))
        q.append(w[:, :1] * lin(model.value, t - 1, own) + w[:, 1:] * lin(model.value, t - 1, p))
    return torch.stack([lin(model.heads, t, q[t])[:, 0] for t in range(model.n_tasks)], dim=1)


def reference_forward(model: MTLModel, x: Features) -> Tensor:
    """``(R, B, K)`` outputs computed replica by replica with plain loops."""
    onehot = x.one_hot(model.spec, dtype=next(model.parameters()).dtype)
    fn = {
        "mmoe": moe_reference,
        "omoe": moe_reference,
        "dselect_k": moe_reference,
        "cgc": ple_reference,
        "ple": ple_reference,
        "single_task": columns_reference,
        "l2_constrained": columns_reference,
        "cross_stitch": columns_reference,
        "shared_bottom": shared_bottom_reference,
        "tensor_factorization": tensor_factorization_reference,
        "adatt": adatt_reference,
        "esmm": esmm_reference,
        "aitm": aitm_reference,
    }[model.name]
    return torch.stack([fn(model, onehot[min(r, onehot.shape[0] - 1)], r) for r in range(model.replicas)])


def l2_reference(model: MTLModel) -> Tensor:
    """alpha * sum over layers and task pairs of ||W_i - W_j||^2, per replica."""
    out = []
    for r in range(model.replicas):
        total = torch.zeros((), dtype=torch.float64)
        for w in model.column_weights():
            for i in range(model.n_tasks):
                for j in range(i + 1, model.n_tasks):
                    total = total + ((w[r, i] - w[r, j]) ** 2).sum()
        out.append(model.alpha * total)
    return torch.stack(out)
