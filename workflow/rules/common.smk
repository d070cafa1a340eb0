# Paths, settings and input functions shared by the rules.

RESULTS = "results"
RUN = f"{RESULTS}/default"
STAGES = config["method"]["profiles"][config["method"]["profile"]]["stages"]
DEVICE = config["workflow"]["device"]


def previous_shape(wildcards):
    return f"{RUN}/stage{int(wildcards.stage) - 1}/shape.h5"


def encoder_init(wildcards):
    stage = int(wildcards.stage)
    return [f"{RUN}/stage{stage - 1}/projected.h5"] if stage > 1 else []
