"""The rerun harness: `pgolf rerun` re-runs a record's own train_gpt.py per seed
under torchrun with a hard wall-clock limit, measures what it wrote, and turns
the runs into Findings (PG420-PG429) and one Audit for every report format.

- :mod:`auditor.harness.run`      launch, stream to a log, kill the process tree
- :mod:`auditor.harness.measure`  artifact bytes on disk, hashes, environment
- :mod:`auditor.harness.batch`    plan, torchrun command + env, run.json per seed
- :mod:`auditor.harness.summary`  Findings and the Audit
- :mod:`auditor.harness.command`  the typer command `rerun`
"""

# The rerun defaults live here, not in batch/summary, so the command's module
# (imported by `pgolf --help`) stays light.
DEFAULT_TOLERANCE_BPB = 0.005  # val_bpb the reproduced mean may exceed the claimed mean by
DEFAULT_MARGIN_S = 180.0  # added to the 600 s train + 600 s eval budget for the hard limit
DEFAULT_GRACE_S = 10.0  # SIGTERM to SIGKILL at the limit
