"""Evaluation report (Markdown + PNG plots) and the model card."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ._data import Dataset
from ._metrics import apply_temperature, positive_score, reliability_bins

__all__ = ["metrics_tables", "write_model_card", "write_report"]

F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]


def _f(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def metrics_tables(res: dict[str, Any]) -> str:
    """Markdown tables: CNN vs baseline, stability, confusion matrix."""
    cnn, base, lat = res["cnn"], res.get("baseline", {}), res["latency"]
    flt = res.get("float", {})
    lines = [
        f"Test set: {res['test_source']}.",
        "",
        "| metric | CNN int8 | CNN float | classical baseline |",
        "|---|---|---|---|",
        f"| ROC AUC (lesion present vs absent) | {_f(cnn['auc'], 4)} | {_f(flt.get('auc'), 4)} "
        f"| {_f(base.get('auc'), 4)} |",
        f"| accuracy ({len(res['labels'])} classes) | {_f(cnn['accuracy'])} | "
        f"{_f(flt.get('accuracy'))} | {_f(base.get('accuracy'))} |",
        f"| sensitivity / specificity at threshold {res['threshold']:.3f} | "
        f"{_f(cnn['sensitivity'])} / {_f(cnn['specificity'])} | | |",
        f"| ECE (15 bins), uncalibrated | {_f(cnn['ece'])} | {_f(flt.get('ece'))} "
        f"| {_f(base.get('ece'))} |",
        f"| ECE after temperature T = {res['temperature']:.3f} | {_f(cnn['ece_calibrated'])} | | |",
        f"| localisation hit rate (positives) | {_f(cnn['hit_rate'])} | | |",
        f"| fraction in the abstain band | {_f(cnn['abstain_fraction'])} | | |",
        f"| float vs int8 label agreement | {_f(res.get('float_int8_agreement'), 4)} | | |",
        f"| latency ms/frame, 1 thread (preprocess + predict / features + predict) | "
        f"{_f(lat['cnn_ms'], 2)} | | {_f(lat.get('baseline_ms'), 2)} |",
        f"| interpreter invoke only, ms | {_f(lat['invoke_ms'], 3)} | | |",
        f"| size, bytes | {res['bytes']} | | {base.get('bytes', 'n/a')} |",
        "",
        "Stability (CNN int8; AUC of the positive score):",
        "",
        "| set | n | AUC | accuracy | sensitivity | specificity | ECE calibrated |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in res["stability"].items():
        lines.append(
            f"| {name} | {s['n']} | {_f(s['auc'], 4)} | {_f(s['accuracy'])} | "
            f"{_f(s['sensitivity'])} | {_f(s['specificity'])} | {_f(s['ece_calibrated'])} |"
        )
    if base:
        lines.append(
            f"| second seed base, classical baseline | | "
            f"{_f(base.get('auc_second_seed_base'), 4)} | | | | |"
        )
    labels = res["labels"]
    lines += [
        "",
        "Confusion matrix (CNN int8; rows true, columns predicted by argmax):",
        "",
        "| true \\ predicted | " + " | ".join(labels) + " |",
        "|---" * (len(labels) + 1) + "|",
    ]
    for name, row in zip(labels, res["confusion_matrix"], strict=True):
        lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def _plots(out: Path, res: dict[str, Any], test: Dataset, probs: F64, heat: F32) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    neg = test.negative_index
    cal = apply_temperature(probs, res["temperature"])
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    curves = [("CNN int8", positive_score(cal, neg))]
    if "_baseline_probs" in res:
        curves.append(("features + LR", positive_score(res["_baseline_probs"], neg)))
    for label, score in curves:
        fpr, tpr, _ = roc_curve(test.positive, score)
        auc = res["cnn"]["auc"] if label == "CNN int8" else res["baseline"]["auc"]
        ax.plot(fpr, tpr, label=f"{label} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=f"ROC, {res['model']}")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "roc.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(8, 4), sharey=True)
    for ax, p, title in ((axes[0], probs, "uncalibrated"), (axes[1], cal, "temperature-scaled")):
        r = reliability_bins(p, test.y)
        centers = (r["edges"][:-1] + r["edges"][1:]) / 2
        used = r["count"] > 0
        ax.bar(centers[used], r["accuracy"][used], width=1 / 15, alpha=0.7, edgecolor="k")
        ax.plot([0, 1], [0, 1], "k:")
        ax.set(xlabel="confidence (top probability)", title=title)
    axes[0].set_ylabel("accuracy")
    fig.tight_layout()
    fig.savefig(out / "reliability.png", dpi=110)
    plt.close(fig)

    cm = np.asarray(res["confusion_matrix"])
    fig, ax = plt.subplots(figsize=(1.2 * len(test.labels) + 2, 1.0 * len(test.labels) + 1.5))
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", color="k")
    ax.set_xticks(range(len(test.labels)), test.labels, rotation=30)
    ax.set_yticks(range(len(test.labels)), test.labels)
    ax.set(xlabel="predicted", ylabel="true", title="confusion matrix (int8)")
    fig.tight_layout()
    fig.savefig(out / "confusion.png", dpi=110)
    plt.close(fig)

    rng = np.random.default_rng(0)
    pick: list[int] = []
    for k in range(len(test.labels)):
        idx = np.flatnonzero(test.y == k)
        pick += rng.choice(idx, min(4, idx.size), replace=False).tolist()
    cols = 4
    rows = (len(pick) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.6 * rows), squeeze=False)
    size = test.x.shape[1]
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), pick, strict=False):
        ax.imshow(test.x[i, :, :, 0], cmap="gray", vmin=0, vmax=1)
        ax.imshow(
            heat[i],
            cmap="inferno",
            alpha=0.4,
            vmin=0,
            vmax=1,
            extent=(-0.5, size - 0.5, size - 0.5, -0.5),
        )
        box = test.bboxes[i]
        if box is not None:
            fh, fw = test.frame_shapes[i]
            y0, x0, y1, x1 = (
                box[0] * size / fh,
                box[1] * size / fw,
                box[2] * size / fh,
                box[3] * size / fw,
            )
            ax.add_patch(
                matplotlib.patches.Rectangle(
                    (x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="cyan", lw=1
                )
            )
        pred = int(cal[i].argmax())
        ax.set_title(
            f"{test.labels[test.y[i]]} -> {test.labels[pred]}\n"
            f"pos {1 - cal[i, test.negative_index]:.2f}",
            fontsize=8,
        )
    fig.suptitle("test frames, heatmap overlay (cyan: true lesion bbox)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "examples.png", dpi=100)
    plt.close(fig)


def write_report(
    out: Path,
    res: dict[str, Any],
    test: Dataset,
    probs: F64,
    heat: F32,
    *,
    extra_md: str = "",
) -> Path:
    """Write ``report.md``, ``metrics.json`` and ``roc.png``, ``reliability.png``,
    ``confusion.png``, ``examples.png`` into ``out``; ``extra_md`` (the robustness, OOD and
    second-family sections) is appended to the report."""
    out.mkdir(parents=True, exist_ok=True)
    _plots(out, res, test, probs, heat)
    clean = {k: v for k, v in res.items() if not k.startswith("_")}
    (out / "metrics.json").write_text(json.dumps(clean, indent=2) + "\n", encoding="utf-8")
    seeds = res.get("seeds", {"test": 303, "test2": 404, "stability": 505})
    text = f"""# Evaluation report: {res["model"]}

**NOT FOR CLINICAL USE.** Synthetic phantoms only (`medimg_edge.synth`); see the model card.

The int8 package was loaded with `me.load_model(..., delegate="cpu", num_threads=1)` and
every frame went through `medimg_edge.preprocess.to_model_input` (the runtime's preprocessing).
Generator seed bases: test {seeds["test"]}, second test {seeds["test2"]}, stability
{seeds["stability"]}-{seeds["stability"] + 2} (chunk `c` of a set uses seed `base * 1000 + c`);
training used 101 and validation (threshold, temperature) 202, so no test frame was seen in
training or tuning.

{metrics_tables(clean)}
- ROC: the positive score is `1 - P({res["labels"][0]})` after temperature scaling.
- ECE: top-label expected calibration error, 15 equal-width bins (Naeini et al. 2015).
- Hit rate: lesion frames whose heatmap argmax cell centre lies in the true lesion
  bounding box dilated by one heatmap cell.
- Classical baseline: `me.features.extract(frame)` (66 features of the raw frame) +
  StandardScaler + LogisticRegression, trained on the same phantom training set.
- Latency: median over 200 frames of {res["latency"]["frame_size"]} px, one thread, this
  machine; "CNN" = `to_model_input` + `Model.predict`; "baseline" = `features.extract` +
  `predict_proba`.

![ROC](roc.png)
![reliability](reliability.png)
![confusion](confusion.png)
![examples](examples.png)

{extra_md}"""
    path = out / "report.md"
    path.write_text(text, encoding="utf-8")
    return path


def _trust_section(meta: dict[str, Any], res: dict[str, Any] | None) -> str:
    """Model-card section on the OOD guard, the robustness matrix and the second family."""
    ood = meta.get("ood")
    lines = ["## When it does not know", ""]
    if ood is None:
        lines.append(
            "This package has **no out-of-distribution guard**: results say "
            '`ood: {"guard": "absent"}` and every frame that passes the quality gate gets a '
            "label."
        )
    else:
        lines.append(
            "Out-of-distribution guard: class-conditional Mahalanobis distance of the model's "
            f"{ood['dim']}-d pooled features (`features` output, so it also works on the Edge "
            "TPU) with a shared Ledoit-Wolf covariance, fitted on "
            f"{ood.get('fit', {}).get('n_train', '?')} augmented training frames; threshold "
            f"{ood['threshold']:.3f} = the {ood['quantile']:.0%} quantile of the validation "
            "distances. Above it, `diagnose()` returns `indeterminate` with reason "
            "`out_of_distribution` and reports no label, score or heatmap."
        )
    if res is not None and "robustness" in res:
        rob = res["robustness"]
        cells = [c for row in rob["transforms"].values() for c in row.values()]
        cells += list(rob["sizes"].values())
        aucs = [c["auc"] for c in cells if isinstance(c.get("auc"), float)]
        fprs = [c["fpr"] for c in cells if isinstance(c.get("fpr"), float)]
        lines += [
            "",
            f"Robustness matrix ({len(cells)} cells: device-processing transforms at 3-4 "
            f"strengths and frame sides 256-3072 px): AUC {min(aucs):.3f}-{max(aucs):.3f}, "
            f"FPR at the threshold {min(fprs):.3f}-{max(fprs):.3f} (every cell in the report).",
        ]
        o = res.get("ood", {})
        if o.get("guard") == "mahalanobis":
            lines.append(
                f"OOD suite: AUROC {o['auroc_all']:.4f}; in-distribution rejection "
                f"{o['id_rejection']:.3f}; far-OOD inputs diagnosed positive: "
                f"{len(o['far_ood_positive'])}."
            )
        h = res.get("holdout")
        if h:
            lines.append(
                f"Second phantom family (a different simulator, never used in training): "
                f"AUC {h['auc']:.3f}, FPR {h['fpr']:.3f} at the threshold."
            )
    return "\n".join(lines) + "\n"


def write_model_card(
    sidecar: Path,
    res: dict[str, Any] | None,
    ops: dict[str, Any],
    summary: dict[str, Any],
    report_link: str | None,
) -> Path:
    """Write ``<name>.md`` next to the sidecar: intended use, data, metrics, limitations,
    Edge TPU compatibility (from ``ops``: see ``_network.model_ops``)."""
    meta = json.loads(sidecar.read_text(encoding="utf-8"))
    name, modality = meta["name"], meta["modality"]
    inp = meta["input"]
    phantoms = {
        "xray": "simulated PA chest radiographs (analytic anatomy of randomised shape and "
        "edge sharpness: body, lungs, heart, spine, ribs, clavicles; Beer-Lambert attenuation; "
        "Poisson quantum and electronic noise at a dose drawn from 1e3-1.2e5 quanta/pixel; a "
        "random display mapping; optional diffuse opacity as a confounder), with or without a "
        "solid or ground-glass nodule (radius 1.5-15 px at 256, density 0.3-3 x soft tissue) "
        "in a lung, rendered at 128-3072 px",
        "ultrasound": "simulated B-mode frames (speckle from scatterers convolved with a "
        "point-spread function of random size, log compression with random gain and dynamic "
        "range, varied SNR, depth and probe geometry), normal or with a cyst, a hypoechoic or "
        "a hyperechoic lesion (semi-axes 1.5-15 px at 128, soft or sharp edges), rendered at "
        "128-1536 px",
    }.get(modality, "images")
    unsupported = ops["edgetpu_unsupported"]
    tpu = (
        "every op is in the Edge TPU supported-operations list"
        if not unsupported
        else f"ops NOT in the Edge TPU list: {', '.join(unsupported)}"
    )
    metrics = metrics_tables(res) if res is not None else "Not evaluated yet.\n"
    trust = _trust_section(meta, res)
    prov = meta["provenance"]
    status = ""
    if res is not None and not res["cnn"]["auc"] >= 0.97:
        status = (
            f"\n> **Status: does not meet the reference target** (test ROC AUC "
            f"{res['cnn']['auc']:.3f} < 0.97). Do not rely on its scores even for demos.\n"
        )
    text = f"""# Model card: {name} v{meta["version"]}

> **NOT FOR CLINICAL USE.** A research and engineering reference trained only on synthetic
> phantoms. It has never seen a patient image and must not be used for diagnosis.
{status}
## Intended use

Demonstrates on-device triage with medimg-edge: `me.load_model("{name}")` then
`model.predict(to_model_input(frame, model.package.input))`. Input: one {modality} frame,
any size, gray; the runtime windows it to [0, 1] (0.5th-99.5th percentile) and
area-resizes it to {inp["height"]}x{inp["width"]}. Outputs: `scores`, softmax over
{meta["labels"]} (lesion score = 1 - P("{meta["negative_label"]}")), and `heatmap`, a
{inp["height"] // 8}x{inp["width"] // 8} sigmoid map of where the lesion is (coarse
localisation). Decision: lesion when the temperature-scaled lesion score is >=
{meta["decision"]["threshold"]:.3f}; "indeterminate" inside
[{meta["decision"]["abstain_band"][0]:.3f}, {meta["decision"]["abstain_band"][1]:.3f}].

## Training data

Only {phantoms}, generated by `medimg_edge.synth`. {prov["training_data"]}

Threshold (maximum Youden J on the validation split, on the calibrated lesion score) and
temperature T = {meta["calibration"]["temperature"]:.3f} (NLL of `softmax(log p / T)` on the
int8 model's validation outputs; Guo et al. 2017) were fitted on the validation split only.

## Model

Depthwise-separable CNN (MobileNet-style blocks, Howard et al. 2017), stem conv 3x3/2
and three stages; {summary.get("params", "?")} parameters; BatchNorm folded; full-integer
post-training quantisation (Jacob et al. 2018) with {
        prov.get("network", {}).get("n_representative", "?")
    } representative training frames: int8 weights, activations,
input and outputs; {meta["files"]["cpu"]["bytes"]} bytes.

## Metrics (held-out phantoms)

{metrics}
{f"Full report with plots: [{report_link}]({report_link})." if report_link else ""}

{trust}
## Edge TPU compatibility

Ops in the int8 model ({ops["op_count"]} operators): {", ".join(ops["ops"])}; {tpu}.
Types: input and every op output {", ".join(ops["tensor_dtypes"])}; constants
{", ".join(ops.get("constant_dtypes", []))} (int8 weights, int32 biases, as the Edge TPU
expects); static shapes, batch 1:
{"yes" if not ops["dynamic"] else "NO (dynamic dimension found)"}.
`edgetpu_compiler` was **not** run: it is not installable on the machine that built this
model, so no `_edgetpu.tflite` variant ships and the Edge TPU mapping is unverified.

## Limitations: what the phantoms cannot show about real patients

- Synthetic phantoms only: real images differ in anatomy, devices, artefacts, post-processing
  and prevalence; performance on real data is unknown. The second phantom family is a
  different simulator written by the same team, not a different patient population.
- Real anatomy and pathology are far richer: overlapping structures, vessels seen end-on that
  mimic nodules, calcified granulomas, scars, effusions, devices (lines, tubes, pacemakers),
  motion, patient positioning, children; for ultrasound: shadowing from bone and gas,
  reverberation, vessels, complex cysts, Doppler overlays. None is simulated.
- Prevalence here is 50 %; the threshold and the predictive values at a clinical prevalence
  would differ.
- One lesion at most per frame; lesion types, sizes and contrasts are limited to what the
  simulators draw. Very small (radius < 3 px at model resolution) or faint ground-glass
  nodules are often missed (see AUC by lesion size and density in the report).
- The out-of-distribution guard only knows the training frames' feature distribution: a
  real image it accepts is not thereby one the model is right about.
- The heatmap is coarse (1/8 resolution) and not a segmentation.
- Calibration and threshold hold for the validation distribution only.

## Provenance

Created {prov["created"]} by {prov["code_version"]}; command: `{prov.get("command", "")}`.
"""
    path = sidecar.with_name(meta["model_card"])
    path.write_text(text, encoding="utf-8")
    return path
