# Paths, settings and input functions shared by the rules.
import shutil

RESULTS = "results"
RUN = f"{RESULTS}/default"
STAGES = config["method"]["profiles"][config["method"]["profile"]]["stages"]
DEVICE = config["workflow"]["device"]
# Torch steps on a CPU use every core (one at a time beats several fighting for the cores); on a
# GPU machine they need few, so that `--resources gpu=N` can run N of them side by side.
ON_CPU = DEVICE == "cpu" or (DEVICE == "auto" and shutil.which("nvidia-smi") is None)
CPU_THREADS = workflow.cores if ON_CPU else min(4, workflow.cores)


def previous_shape(wildcards):
    return f"{RUN}/stage{int(wildcards.stage) - 1}/shape.h5"


def encoder_init(wildcards):
    stage = int(wildcards.stage)
    return [f"{RUN}/stage{stage - 1}/projected.h5"] if stage > 1 else []
