"""recipes/train_demo_rm.py records the environment the demo model was trained in, in its card, and
says before training when the current one differs: byte-identical retraining needs the same one."""

import functools
import importlib.util
import json
import re
import string
import sys
from dataclasses import asdict
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
DEMO_RM = REPO / "rmscore" / "data" / "demo-rm"


@functools.cache
def recipe():
    spec = importlib.util.spec_from_file_location("train_demo_rm", REPO / "recipes" / "train_demo_rm.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_the_card_records_the_environment_the_recipe_trained_in():
    r = recipe()
    s = r.Settings()
    env = r.environment(s)
    assert env["torch"] == torch.__version__ and env["threads"] == s.threads
    results = dict(n_train=1828, n_heldout=480, vocab=4096, wall_min=1.6, cpu_min=3.1, heldout_accuracy=0.6,
                   train_accuracy=0.7, length_train=0.6, length_heldout=0.58)
    card = r.model_card(torch.nn.Linear(3, 2), s, results, env)
    assert r.recorded_environment(card) == env  # round trip through the template
    assert f'"seed": {s.seed}' in card  # the settings block is not mistaken for the environment


def test_shipped_card_records_what_config_json_says():
    r = recipe()
    recorded = r.recorded_environment((DEMO_RM / "README.md").read_text())
    config = json.loads((DEMO_RM / "config.json").read_text())
    assert recorded is not None and recorded.keys() == r.environment(r.Settings()).keys()
    assert recorded["transformers"] == config["transformers_version"]
    assert recorded["threads"] == asdict(r.Settings())["threads"]


def test_recipe_says_when_the_environment_differs(capsys):
    r = recipe()
    env = r.environment(r.Settings())
    r.say_what_differs(dict(env), env)
    r.say_what_differs(None, env)  # no card yet: nothing to compare with
    assert capsys.readouterr().out == ""
    # The "other" environment is built from this one, so the test means the same on any CPU.
    kernels = next(k for k in ("AVX512", "AVX2", "DEFAULT") if k != env["cpu_kernels"])
    transformers = "0.0.1" if env["transformers"] != "0.0.1" else "0.0.2"
    r.say_what_differs({**env, "transformers": transformers, "cpu_kernels": kernels}, env)
    out = capsys.readouterr().out
    assert f"transformers {transformers} -> " in out and f"cpu_kernels {kernels} -> " in out and "torch" not in out


def test_shipped_card_is_the_template_filled_in():
    """The shipped card was edited by hand when the template changed: its text must still be the template's."""
    template = (REPO / "recipes" / "demo_rm_card.md").read_text()
    pattern = "".join(re.escape(literal) + ("(.+?)" if field is not None else "")
                      for literal, field, _, _ in string.Formatter().parse(template))
    assert re.fullmatch(pattern, (DEMO_RM / "README.md").read_text(), re.DOTALL)
