"""Is a latency stand-in as fast as the trained model? Trained bundle vs stand-in, side by side, one study folder.

``ibit-deploy compare --retime`` times a stand-in (the run's architecture trained 2 steps, exported the same way;
see ibit_deploy/study/latency_standins.py) for a candidate whose trained bundles are gone, on the premise that an fp32
graph's latency does not depend on its weight values. This checks the premise on the candidates of a study that
still have a trained model: a trained bundle in a run folder, or else a finished checkpoint (exported here, as the
worker does).
Both are timed in the same interleaved rounds; the ratio stand-in / trained should be 1 within the rounds' noise.
The stand-ins are built as the report builds them, into the study's ``latency_standins/`` (a later report reuses
them); exports of checkpoints go to a temporary folder.

    python benchmarks/standin_latency.py --study runs/data_efficiency --rounds 7
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from ibit_deploy.devicekit.layout import MANIFEST_FILE
from ibit_deploy.study import layout
from ibit_deploy.study.latency import interleaved_latency
from ibit_deploy.study.latency_standins import standin_bundle
from ibit_deploy.study.report import load_study, representative_first
from ibit_deploy.study.worker import checkpoint_finished, timing_export_options


def trained_bundle(out: Path, run_id: str, scratch: Path, study: dict) -> Path | None:
    """The run's trained bundle, or its finished checkpoint exported into ``scratch``; None when neither is left."""
    from ibit_deploy.export.pipeline import export_checkpoint

    folder = layout.run_dir(out, run_id)
    if (folder / layout.BUNDLE_DIR / MANIFEST_FILE).is_file():
        return folder / layout.BUNDLE_DIR
    checkpoint = folder / layout.CHECKPOINT_DIR
    if not checkpoint_finished(checkpoint):
        return None
    bundle = scratch / run_id.replace("/", "_")
    export_checkpoint(checkpoint, bundle, timing_export_options(study))
    return bundle


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--study", type=Path, required=True, help="a compare study folder")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--seconds", type=float, default=0.5, help="seconds per measurement")
    args = p.parse_args(argv)
    study = load_study(args.study)
    recipe = study["recipe"]
    batches = sorted(recipe["latency_batches"])
    with tempfile.TemporaryDirectory() as scratch:
        bundles: dict[str, Path] = {}
        pairs: list[tuple[str, str]] = []  # (trained key, stand-in key) per candidate with a trained model left
        for name in study["candidates"]:
            runs = sorted((r for r in study["results"] if r["name"] == name), key=representative_first)
            for r in runs:
                trained = trained_bundle(args.study, r["id"], Path(scratch), recipe)
                if trained is not None:
                    pair = (f"{name} trained ({r['id']})", f"{name} stand-in")
                    bundles[pair[0]], bundles[pair[1]] = trained, standin_bundle(args.study, r["id"])
                    pairs.append(pair)
                    break
        if not bundles:
            print(f"{args.study}: no candidate has a trained bundle or finished checkpoint left; nothing to compare")
            return 1
        measured = interleaved_latency(bundles, recipe["backend"], batches, rounds=args.rounds,
                                       seconds=args.seconds, threads=recipe["threads"])["candidates"]
    print(f"{recipe['backend']}, {recipe['threads']} thread(s), {args.rounds} interleaved rounds, median of the "
          f"rounds' p50 (ms)")
    print("| model | " + " | ".join(f"b{b} trained | b{b} stand-in | stand-in / trained" for b in batches) + " |")
    print("|---" * (1 + 3 * len(batches)) + "|")
    for trained_key, standin_key in pairs:
        trained, standin = measured[trained_key], measured[standin_key]
        if "unavailable" in trained or "unavailable" in standin:
            print(f"| {trained_key} | unavailable: {trained.get('unavailable') or standin.get('unavailable')} |")
            continue
        cells = []
        for b in batches:
            t, s = trained[str(b)]["p50_ms"], standin[str(b)]["p50_ms"]
            cells.append(f"{t:.3f} | {s:.3f} | {s / t:.3f}")
        print(f"| {trained_key} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
