"""The lab run: every family trained with one preset, and the report of what came out.

    classifier -> AE -> VAE -> HVAE -> DDPM -> KL-weight sweep -> <out>/results.md

Each stage builds a model with `build_model`, trains it with the one training
loop (`genlab.train.train`), scores it on the test split with the family's own
metrics (genlab.metrics.family), draws the family's pictures (genlab.figures.artifacts), and, for models
that generate, scores samples with FID next to its floor (genlab.metrics).
The feature network of FID is the classifier trained in the same run (passed
by path, so a classifier the user keeps under ~/.cache/genlab is untouched).

A stage leaves its run folder <out>/<stage>/ (a normal genlab checkpoint:
`genlab sample`, `genlab eval` work on it) plus `lab_row.json`, its numbers.
The report is rebuilt from every row in <out>, so `--only ddpm` retrains one
model and keeps the other rows. An interrupted lab run continues with
`--resume`: finished stages (those with a row) are kept, a stage stopped
mid-training continues from its checkpoint (the optimizer state is kept until
the stage's row is written, then dropped: it is 2x the weights).

presets.py: the presets; runner.py: the run (Lab); report.py: results.md.
"""

from .presets import (FAMILY, PRESETS, PUBLIC_PRESETS, STAGES, TITLE, Preset, Stage, Sweep,  # noqa: F401
                      full, make_preset, parse_only, quick, tiny)
from .report import write_report  # noqa: F401
from .runner import Lab, OutputLock  # noqa: F401
