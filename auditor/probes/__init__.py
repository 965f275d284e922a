"""Dynamic probes: prove (or fail to prove) leaks by running the submission's own
evaluation code on CPU, in a sandboxed subprocess, on a synthetic stream.

    probe_record(path) -> ProbeReport (findings PG150-PG159)

The parent (runner) never imports torch; the child (child.py) loads the
submission with CUDA-only pieces stubbed (loader.py), shrinks its config and
model (discover.py) and runs the probes (probes.py).

The headline pipeline (headline.py, discover.pre_eval_steps): the function that
computes the logs' headline metric runs first, preceded by main()'s steps that
train on validation tokens after the weights are loaded. A verdict is a measured
violation, a check that held (naming the entries and functions that ran), or
NOT PROVEN: when nothing ran or the headline's evaluation did not run, PG159 is
a warning, never a pass.
"""

__all__ = ["PROBE_RULES", "ProbeReport", "probe_record"]


def __getattr__(name: str):
    # Lazy: `pgolf --help` imports auditor.probes.command, which must not pull
    # the runner's imports (auditor.checks -> record -> source -> libcst).
    if name in __all__:
        from auditor.probes import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
