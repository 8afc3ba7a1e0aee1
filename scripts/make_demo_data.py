"""Write the bundled demo set: synthetic chest X-ray findings -> impression pairs.

    python scripts/make_demo_data.py            # rewrites src/prunetune/data/demo/radiology_demo.jsonl
    python scripts/make_demo_data.py --check    # exit 1 if the committed file is out of date

Every report is made up from templates; no real report text is used. The set is meant
to be learnable by a small model in a few minutes of CPU, so the impression is a
deterministic function of what the findings say:

* Each report is written in one of four reporting styles. A style has its own wording
  for normal structures and its own "normal study" impression, so even the normal
  impression can be read off the findings.
* Abnormal findings (cardiomegaly, pleural effusion, pneumothorax, consolidation,
  nodule, atelectasis, edema, hyperinflation, and incidental chronic findings) come
  with severity, side, location or size, written in varied phrasings; the impression
  names each of them in one fixed phrasing, in a fixed order of urgency. Reports with
  only incidental findings start with the style's normal impression.

Findings are 20-60 words and impressions 2-20 words (most 4-12); ``subset`` is "normal"
when a report has no finding at all. The output is the same, byte for byte, on every run.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "src" / "prunetune" / "data" / "demo" / "radiology_demo.jsonl"
DEFAULT_COUNT = 400
DEFAULT_SEED = 2305  # any fixed value; 2305 after the reference paper, arXiv 2305.08285

STRUCTURES = ("heart", "mediastinum", "lungs", "pleura", "bones")


@dataclass(frozen=True)
class Style:
    """One radiologist's way of writing: normal-structure sentences and the normal impression."""

    normal: dict[str, tuple[str, ...]]
    order: tuple[str, ...]
    normal_impression: str
    technique: tuple[str, ...]


STYLES = (
    Style(normal={"heart": ("The heart is normal in size.", "Heart size is normal.",
                            "The heart size is within normal limits."),
                  "mediastinum": ("The mediastinum is unremarkable.", "Mediastinal contours are normal.",
                                  "The mediastinal silhouette is unremarkable."),
                  "lungs": ("The lungs are clear.", "The lungs are clear without focal airspace disease.",
                            "Both lungs are clear."),
                  "pleura": ("There is no pleural effusion or pneumothorax.",
                             "No pleural effusion or pneumothorax is seen.",
                             "There is no pneumothorax or pleural effusion."),
                  "bones": ("The osseous structures are intact.", "No acute osseous abnormality is identified.",
                            "The bony structures are grossly intact.")},
          order=STRUCTURES, normal_impression="No acute cardiopulmonary abnormality identified.",
          technique=("PA and lateral views of the chest were obtained.", "Two views of the chest.",
                     "PA and lateral chest radiographs were reviewed.")),
    Style(normal={"heart": ("Cardiac size is within normal limits.", "Normal cardiac silhouette.",
                            "The cardiac size is normal."),
                  "mediastinum": ("Normal mediastinal and hilar contours.",
                                  "Hilar and mediastinal silhouettes are unremarkable.",
                                  "Mediastinal and hilar contours are within normal limits."),
                  "lungs": ("No focal consolidation, edema, or mass.", "Lungs are well expanded and clear.",
                            "The lungs are well expanded without focal consolidation."),
                  "pleura": ("No effusion or pneumothorax.", "Costophrenic angles are sharp.",
                             "No pleural effusion or pneumothorax is present."),
                  "bones": ("Visualized osseous structures are unremarkable.", "No displaced rib fracture.",
                            "No acute fracture is seen.")},
          order=("lungs", "pleura", "heart", "mediastinum", "bones"),
          normal_impression="No evidence of acute cardiopulmonary process.",
          technique=("Frontal and lateral chest radiographs.", "Upright AP and lateral views of the chest.",
                     "Frontal and lateral views of the chest were obtained.")),
    Style(normal={"heart": ("Normal heart size.", "Heart is not enlarged.", "Heart size normal."),
                  "mediastinum": ("Normal mediastinum.", "Mediastinum within normal limits.",
                                  "Normal mediastinal width."),
                  "lungs": ("Clear lungs bilaterally.", "No infiltrates in either lung.",
                            "Lungs clear, no infiltrate or mass."),
                  "pleura": ("No effusions.", "No pneumothorax or effusion.", "No pleural fluid or air."),
                  "bones": ("Bones unremarkable for age.", "No acute bony abnormality.",
                            "Osseous structures unremarkable for age.")},
          order=STRUCTURES, normal_impression="Normal chest x-ray, no acute disease.",
          technique=("Comparison: none available. Chest, two views.", "Chest PA and lateral, compared with prior.",
                     "Chest, two views, no prior study for comparison.")),
    Style(normal={"heart": ("The cardiac silhouette is normal in size and contour.",
                            "The cardiac silhouette is not enlarged.",
                            "Heart size is normal and the cardiac contour is unremarkable."),
                  "mediastinum": ("The trachea is midline and the mediastinum is not widened.",
                                  "The mediastinum is not widened.",
                                  "Mediastinal and hilar contours are unchanged and unremarkable."),
                  "lungs": ("There is no focal airspace opacity to suggest pneumonia.",
                            "The lungs are well aerated without focal opacity.",
                            "There is no focal airspace opacity, mass, or interstitial abnormality."),
                  "pleura": ("There is no evidence of pleural effusion or pneumothorax.",
                             "No pleural effusion or pneumothorax is evident.",
                             "There is no evidence of pneumothorax or pleural effusion."),
                  "bones": ("The visualized bony thorax is intact.",
                            "The visualized osseous structures are without acute abnormality.",
                            "No acute osseous abnormality of the bony thorax.")},
          order=("heart", "mediastinum", "lungs", "pleura", "bones"),
          normal_impression="No radiographic evidence of acute cardiopulmonary disease.",
          technique=("Single frontal view of the chest.", "Portable AP view of the chest.",
                     "Single portable upright view of the chest.")),
)

SIDES = ("left", "right")
LOBES = ("right upper lobe", "right middle lobe", "right lower lobe", "left upper lobe", "left lower lobe",
         "lingula")
NODULE_SITES = ("right upper lobe", "left upper lobe", "right lower lobe", "left lower lobe", "right midlung",
                "left midlung")
DEGREES = ("mild", "moderate")
SIZES = ("small", "moderate", "large")

# Finding kinds in the order the impression lists them: most urgent first, incidental last.
ACUTE = ("pneumothorax", "consolidation", "edema", "effusion", "cardiomegaly", "atelectasis", "nodule",
         "hyperinflation")
INCIDENTAL = ("sternotomy", "rib_fracture", "granuloma", "degenerative")
# The structure whose "normal" sentence a finding contradicts; its sentence goes there too.
AFFECTS = {"pneumothorax": "pleura", "effusion": "pleura", "cardiomegaly": "heart", "consolidation": "lungs",
           "edema": "lungs", "atelectasis": "lungs", "nodule": "lungs", "hyperinflation": "lungs",
           "rib_fracture": "bones", "degenerative": "bones"}
# Where the findings that contradict nothing are written ("The lungs are clear." stands beside a granuloma).
PLACE = {**AFFECTS, "granuloma": "lungs", "sternotomy": "mediastinum"}


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def render(kind: str, rng: random.Random) -> tuple[str, str]:
    """One finding of ``kind``: (findings sentence in a random phrasing, its fixed impression)."""
    if kind == "cardiomegaly":
        degree = rng.choice(DEGREES)
        sentence = rng.choice((f"The heart is {degree}ly enlarged.", f"There is {degree} cardiomegaly.",
                               f"{_cap(degree)} enlargement of the cardiac silhouette."))
        return sentence, f"{_cap(degree)} cardiomegaly."
    if kind == "effusion":
        side, size = rng.choice(("left", "right", "bilateral")), rng.choice(SIZES)
        if side == "bilateral":
            sentence = rng.choice((f"There are {size} bilateral pleural effusions.",
                                   f"{_cap(size)} pleural effusions are present on both sides."))
            return sentence, f"{_cap(size)} bilateral pleural effusions."
        sentence = rng.choice((f"There is a {size} {side} pleural effusion.",
                               f"{_cap(size)} {side} pleural effusion is noted.",
                               f"Blunting of the {side} costophrenic angle from a {size} pleural effusion."))
        return sentence, f"{_cap(size)} {side} pleural effusion."
    if kind == "pneumothorax":
        side, size = rng.choice(SIDES), rng.choice(SIZES)
        sentence = rng.choice((f"There is a {size} {side} apical pneumothorax.",
                               f"A {size} {side} pneumothorax is present.",
                               f"{_cap(size)} {side}-sided pneumothorax with a visible pleural line."))
        return sentence, f"{_cap(size)} {side} pneumothorax."
    if kind == "consolidation":
        lobe = rng.choice(LOBES)
        sentence = rng.choice((f"There is focal airspace consolidation in the {lobe}.",
                               f"Patchy opacity in the {lobe} compatible with consolidation.",
                               f"Airspace disease is seen within the {lobe}."))
        return sentence, f"{_cap(lobe)} consolidation concerning for pneumonia."
    if kind == "nodule":
        site, size = rng.choice(NODULE_SITES), rng.randrange(5, 19)
        sentence = rng.choice((f"A {size} mm nodule is seen in the {site}.",
                               f"There is a {size} mm nodular opacity in the {site}.",
                               f"A {size} mm pulmonary nodule projects over the {site}."))
        return sentence, f"{size} mm {site} nodule; recommend chest CT."
    if kind == "atelectasis":
        where = rng.choice(("bibasilar", "left basilar", "right basilar"))
        sentence = rng.choice((f"There is {where} atelectasis.",
                               f"Streaky {where} opacities likely reflect atelectasis.",
                               f"Linear {where} opacities consistent with subsegmental atelectasis."))
        return sentence, f"{_cap(where)} atelectasis."
    if kind == "edema":
        degree = rng.choice(DEGREES)
        sentence = rng.choice((f"There is {degree} pulmonary vascular congestion with interstitial edema.",
                               f"Diffuse interstitial opacities and cephalization consistent with {degree} "
                               "pulmonary edema."))
        return sentence, f"{_cap(degree)} pulmonary edema."
    if kind == "hyperinflation":
        sentence = rng.choice(("The lungs are hyperinflated with flattening of the diaphragms.",
                               "Hyperexpanded lungs with increased retrosternal airspace."))
        return sentence, "Hyperinflated lungs consistent with COPD."
    if kind == "sternotomy":
        sentence = rng.choice(("Median sternotomy wires are intact.",
                               "Postsurgical changes of prior median sternotomy."))
        return sentence, "Postoperative changes of median sternotomy."
    if kind == "rib_fracture":
        side = rng.choice(SIDES)
        sentence = rng.choice((f"Old healed {side} rib fractures.",
                               f"There are healed fractures of the {side} posterior ribs."))
        return sentence, f"Old healed {side} rib fractures."
    if kind == "granuloma":
        site = rng.choice(NODULE_SITES)
        sentence = rng.choice((f"A calcified granuloma is present in the {site}.",
                               f"Calcified granuloma in the {site}."))
        return sentence, f"Calcified {site} granuloma."
    if kind == "degenerative":
        sentence = rng.choice(("Degenerative changes of the thoracic spine.",
                               "There are mild degenerative changes in the thoracic spine.",
                               "Multilevel degenerative disc disease of the thoracic spine."))
        return sentence, "Degenerative changes of the thoracic spine."
    raise ValueError(f"unknown finding kind {kind!r}")


def pick_kinds(rng: random.Random) -> list[str]:
    """The findings of one report: about 40% normal, the rest one or two acute and/or incidental."""
    roll = rng.random()
    if roll < 0.4:
        return []
    if roll < 0.52:
        return [rng.choice(INCIDENTAL)]
    kinds = rng.sample(ACUTE, 2 if rng.random() < 0.35 else 1)
    if rng.random() < 0.25:
        kinds.append(rng.choice(INCIDENTAL))
    return kinds


def make_report(rng: random.Random) -> dict[str, str]:
    """One synthetic report: ``source`` (findings), ``target`` (impression), ``subset``."""
    style = rng.choice(STYLES)
    kinds = pick_kinds(rng)
    rendered = {kind: render(kind, rng) for kind in kinds}
    affected = {AFFECTS[k] for k in kinds if k in AFFECTS}
    sentences = []
    if rng.random() < 0.5:
        sentences.append(rng.choice(style.technique))
    for structure in style.order:
        sentences += [rendered[k][0] for k in kinds if PLACE[k] == structure]
        if structure not in affected:
            sentences.append(rng.choice(style.normal[structure]))
        elif structure == "pleura" and len({"effusion", "pneumothorax"} & set(kinds)) == 1:
            # Say what is absent, as radiologists do, without contradicting what is present.
            sentences.append("No pneumothorax." if "effusion" in kinds else "No pleural effusion.")
    acute = [rendered[k][1] for k in ACUTE if k in rendered]
    incidental = [rendered[k][1] for k in INCIDENTAL if k in rendered]
    if not acute:
        impression = [style.normal_impression] + incidental
    elif len(acute) == 1:
        impression = acute + ["Otherwise no acute cardiopulmonary abnormality."] + incidental
    else:
        impression = acute + incidental
    return {"source": " ".join(sentences), "target": " ".join(impression),
            "subset": "abnormal" if kinds else "normal"}


def generate(count: int = DEFAULT_COUNT, seed: int = DEFAULT_SEED) -> list[dict[str, str]]:
    """``count`` distinct reports within the word limits, numbered ``demo-0001`` on.

    Reports outside the limits or repeating an earlier (source, target) pair are
    redrawn, so the set survives the loaders' cleaning unchanged.
    """
    rng = random.Random(seed)
    rows: list[dict[str, str]] = []
    seen: set[tuple[str, str]] = set()
    while len(rows) < count:
        report = make_report(rng)
        key = (report["source"], report["target"])
        if key in seen or not 20 <= len(report["source"].split()) <= 60 or len(report["target"].split()) > 20:
            continue
        seen.add(key)
        rows.append({**report, "id": f"demo-{len(rows) + 1:04d}"})
    return rows


def to_jsonl(rows: list[dict[str, str]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT, help="number of reports")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSONL file to write")
    parser.add_argument("--check", action="store_true", help="only check that --output is up to date")
    args = parser.parse_args(argv)
    text = to_jsonl(generate(args.count, args.seed))
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.is_file() else None
        if current != text:
            print(f"{args.output} is out of date; rerun scripts/make_demo_data.py", file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    rows = text.count("\n")
    normal = text.count('"subset": "normal"')
    print(f"wrote {args.output}: {rows} reports ({normal} normal, {rows - normal} abnormal)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
