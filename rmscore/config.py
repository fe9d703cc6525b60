"""Typed run configuration. CLI options map 1:1 onto these fields; defaults live here only.

No torch or transformers imports: the CLI builds and validates a config before anything heavy loads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path

from rmscore.errors import ConfigError

OVERFLOW_POLICIES = ("skip", "truncate-left", "error")
DTYPES = ("auto", "float32", "bfloat16", "float16")
AGGREGATES = ("min", "prod", "mean", "last")
FORWARD_PATHS = ("auto", "padded", "packed", "prompt-reuse")
JUDGE_MODES = ("pointwise", "pairwise")
# genrm options other than --judge-template: each needs --model-type genrm.
GENRM_ONLY = {"judge_url": None, "judge_model": None, "judge_api_key_env": None, "judge_mode": "pointwise",
              "verdict_pattern": None, "judge_temperature": 0.0, "judge_seed": None}


def default_model() -> str:
    """The demo reward model, shipped inside the package (rmscore/data/demo-rm, package data), so a
    first run needs no download from any kind of install: editable, wheel or `pip install git+...`.
    It is an ordinary checkpoint folder; nothing else in rmscore knows about it."""
    return str(Path(__file__).resolve().parent / "data" / "demo-rm")


_TYPES = {"str": (str, "text"), "int": (int, "an integer"), "bool": (bool, "true or false"), "None": (type(None), "None")}


def check_types(config) -> None:
    """Every str/int/bool field holds its annotated type: the Python API hands values straight in
    (the CLI's are typed already), and max_length="10" must fail here, not deep in a comparison."""
    for f in fields(config):
        kinds = [_TYPES[t.strip()] for t in f.type.split("|") if t.strip() in _TYPES]
        value = getattr(config, f.name)
        if not kinds or any(type(value) is kind or (kind is int and type(value).__name__.startswith("int"))
                            for kind, _ in kinds):
            continue
        expected = " or ".join(word for _, word in kinds)
        raise ConfigError(f"--{f.name.replace('_', '-')} must be {expected}, got {type(value).__name__} {value!r}")


@dataclass
class ColumnMap:
    """Input column names. `None` means "detect from the standard names"."""

    prompt: str | None = None  # "prompt"
    completion: str | None = None  # "completion"
    completions: str | None = None  # "completions" (a list: one output row per item)
    messages: str | None = None  # "messages" (last turn is the assistant's)
    chosen: str | None = None  # "chosen" (with "rejected": both sides scored)
    rejected: str | None = None  # "rejected"
    steps: str | None = None  # "steps" (process reward models: a list of step strings)
    id: str | None = None  # prompt id column; default is a hash of the prompt content


@dataclass
class InputConfig:
    path: str
    split: str = "train"  # for Hub datasets and DatasetDict folders
    config_name: str | None = None  # Hub dataset configuration
    columns: ColumnMap = field(default_factory=ColumnMap)
    keep_columns: list[str] = field(default_factory=list)  # copied unchanged into the output
    limit: int | None = None  # read at most this many input rows (smoke tests)
    json_columns: list[str] = field(default_factory=list)  # text cells of these columns are decoded as JSON

    def __post_init__(self):
        if self.limit is not None and self.limit <= 0:
            raise ConfigError(f"--limit must be positive, got {self.limit}")


@dataclass
class ModelConfig:
    path: str = field(default_factory=default_model)
    model_type: str = "auto"  # adapter name from `rmscore models`, or auto-detect from config.json
    revision: str | None = None
    dtype: str = "auto"  # auto: bfloat16 on CUDA, float32 on CPU
    device: str = "auto"  # auto: cuda if available, else cpu
    device_map: str | None = None  # "auto": split a model too big for one GPU (accelerate)
    attn_implementation: str | None = None  # None: transformers' default (sdpa)
    trust_remote_code: bool = False  # never run checkpoint code unless asked
    allow_pickle: bool = False  # refuse .bin (pickle) weights unless asked
    chat_template: str | None = None  # a Jinja file or string overriding the checkpoint's template
    system_prompt: str | None = None  # prepended as a system turn; None: the adapter's default
    # How BOS is produced. "template": tokenize the rendered template without adding specials
    # (what apply_chat_template(tokenize=True) does: one BOS). "double": add the tokenizer's
    # specials on top, reproducing card code that tokenizes tokenize=False output (GRM, URM).
    # None: the family's reference behaviour (template, except internlm2's card code: double).
    bos: str | None = None
    step_separator: str | None = None  # PRMs: how to split a completion into steps
    aggregate: str = "min"  # PRMs: which step aggregate becomes `score`
    step_tokens: str | None = None  # step-tag PRMs: "TAG GOOD BAD"; None: the family's "ки + -"
    judge_template: str | None = None  # lm-judge, genrm: Jinja (file or text) of the user turn; None: the default
    score_tokens: str | None = None  # lm-judge: "POS NEG", the tokens compared; None: "Yes No"
    # A GGUF file inside `path` (weights dequantized on load). `-m file.gguf` sets both.
    gguf_file: str | None = None
    # genrm, a judge that writes a critique then a verdict (docs/genrm.md). With judge_url it is
    # asked over HTTP (an OpenAI-compatible /v1/chat/completions); without, `path` generates here.
    judge_url: str | None = None  # e.g. http://127.0.0.1:8000/v1 (vllm serve)
    judge_model: str | None = None  # the served model's name: the request's "model"
    judge_api_key_env: str | None = None  # the NAME of the variable holding the key, never the key
    judge_mode: str = "pointwise"  # pointwise: a rating per completion; pairwise: A or B, both orders
    verdict_pattern: str | None = None  # a regex with one group; None: the default template's verdict
    judge_temperature: float = 0.0  # 0: greedy
    judge_seed: int | None = None  # sent as "seed" (servers that take one sample reproducibly)
    judge_max_tokens: int = 1024  # longest critique + verdict generated
    judge_timeout: float = 120.0  # seconds per HTTP request
    judge_retries: int = 6  # tries of one request on 429/5xx, timeouts and dropped connections
    concurrency: int = 8  # HTTP requests in flight

    def __post_init__(self):
        check_types(self)
        self._check_genrm()
        if self.gguf_file is None and self.path.lower().endswith(".gguf"):
            gguf = Path(self.path)
            self.path, self.gguf_file = str(gguf.parent), gguf.name
        if self.dtype not in DTYPES:
            raise ConfigError(f"unknown --dtype {self.dtype!r}", f"choose one of {', '.join(DTYPES)}")
        if self.bos not in (None, "template", "double"):
            raise ConfigError(f"unknown --bos {self.bos!r}", "choose 'template' or 'double'")
        if self.step_separator == "":
            raise ConfigError("--step-separator is empty", "give the text that separates steps, e.g. '\\n\\n'")
        if self.step_tokens is not None and len(self.step_tokens.split()) != 3:
            raise ConfigError(f"--step-tokens {self.step_tokens!r} must be three tokens", "e.g. --step-tokens 'ки + -'")
        if self.score_tokens is not None and len(self.score_tokens.split()) != 2:
            raise ConfigError(f"--score-tokens {self.score_tokens!r} must be two tokens", "e.g. --score-tokens 'Yes No'")
        if self.score_tokens is not None and self.model_type != "lm-judge":
            raise ConfigError("--score-tokens applies to --model-type lm-judge",
                              "add --model-type lm-judge, or drop it")
        if self.judge_template is not None and self.model_type not in ("lm-judge", "genrm"):
            raise ConfigError("--judge-template applies to --model-type lm-judge and genrm",
                              "add --model-type lm-judge or genrm, or drop it")
        if self.aggregate not in AGGREGATES:
            raise ConfigError(
                f"unknown --aggregate {self.aggregate!r}", f"choose one of {', '.join(AGGREGATES)}"
            )

    def _check_genrm(self) -> None:
        if self.judge_url is not None and self.model_type == "auto":
            self.model_type = "genrm"  # a judge URL says which family this is
        given = [k for k, default in GENRM_ONLY.items() if getattr(self, k) != default]
        if given and self.model_type != "genrm":
            raise ConfigError(f"--{given[0].replace('_', '-')} applies to --model-type genrm", "add --model-type genrm")
        if self.model_type != "genrm":
            return
        for name in ("judge_temperature", "judge_timeout"):  # floats: check_types covers str/int/bool only
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), (int, float)):
                raise ConfigError(f"--{name.replace('_', '-')} must be a number, got {getattr(self, name)!r}")
        if self.judge_mode not in JUDGE_MODES:
            raise ConfigError(f"unknown --judge-mode {self.judge_mode!r}", f"choose {' or '.join(JUDGE_MODES)}")
        for name in ("judge_max_tokens", "judge_timeout", "judge_retries", "concurrency"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if not 0 <= self.judge_temperature < math.inf:
            raise ConfigError(f"--judge-temperature must be >= 0, got {self.judge_temperature}")
        if self.judge_url is None:
            if self.judge_temperature or self.judge_seed is not None or self.judge_api_key_env or self.judge_model:
                raise ConfigError("--judge-temperature, --judge-seed, --judge-api-key-env and --judge-model apply to "
                                  "a served judge (--judge-url); the in-process judge (-m) is greedy",
                                  "add --judge-url URL, or drop them")
            return
        if not self.judge_url.startswith(("http://", "https://")):
            raise ConfigError(f"--judge-url must be an http(s) URL, got {self.judge_url!r}",
                              "e.g. --judge-url http://127.0.0.1:8000/v1 (vllm serve MODEL)")
        if not self.judge_model:
            raise ConfigError("--judge-url needs --judge-model NAME, the model the server serves",
                              "vllm serve ORG/MODEL serves it as --judge-model ORG/MODEL")
        if self.path not in (default_model(), self.judge_model):
            raise ConfigError(f"-m {self.path} and --judge-url {self.judge_url}: which judge?",
                              "-m generates in-process; a served judge is named by --judge-model: drop one")
        self.path = self.judge_model  # the served judge names the run's model

    @property
    def checkpoint(self) -> str:
        """The model as the user named it: the GGUF file itself when there is one."""
        return f"{self.path.rstrip('/')}/{self.gguf_file}" if self.gguf_file else self.path


@dataclass
class BatchConfig:
    max_length: int | None = None  # None: the model's own limit
    on_overflow: str = "skip"  # skip | truncate-left | error
    max_tokens_per_batch: int | None = None  # padded tokens per forward; None: derived from the device
    max_batch_size: int = 512  # rows per forward, whatever the budget
    window: int = 8192  # rows sorted together; bounds memory while streaming
    # auto: prompt reuse where completions share enough prompt tokens, packed rows on attention
    # backends where packing is cheap (flash-attention, flex), sorted padded batches otherwise.
    forward: str = "auto"
    # Every row padded to a length that depends on the row alone, batches of one such length, the
    # head run per row: bit-identical scores whatever the batch, budget, order, shards or resume
    # point (rmscore/score/forward/bucketed.py). Forces the padded layout; costs some padding.
    batch_invariant: bool = False

    def __post_init__(self):
        check_types(self)
        if self.on_overflow not in OVERFLOW_POLICIES:
            raise ConfigError(
                f"unknown --on-overflow {self.on_overflow!r}",
                f"choose one of {', '.join(OVERFLOW_POLICIES)}",
            )
        for name in ("max_length", "max_tokens_per_batch"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {value}")
        if self.max_batch_size <= 0 or self.window <= 0:
            raise ConfigError("--max-batch-size and --window must be positive")
        if self.forward not in FORWARD_PATHS:
            raise ConfigError(f"unknown --forward {self.forward!r}", f"choose one of {', '.join(FORWARD_PATHS)}")
        if self.batch_invariant and self.forward not in ("auto", "padded"):
            raise ConfigError(f"--batch-invariant cannot run --forward {self.forward}: its scores depend on the other "
                              "rows of the batch", "drop --forward (batch-invariant mode runs padded rows), or drop "
                              "--batch-invariant")


@dataclass
class OutputConfig:
    path: str
    overwrite: bool = False  # replace results made with other settings instead of refusing
    rows_per_part: int = 50_000  # rows per Parquet part file; a finished part is never rewritten
    # A part is also finished after this many minutes (at the next window): what a SIGKILL or a node
    # failure can lose, which no handler can save, stays bounded in time as well as in rows.
    part_minutes: float = 10.0

    def __post_init__(self):
        if self.rows_per_part <= 0:
            raise ConfigError("--rows-per-part must be positive")
        if self.part_minutes <= 0:
            raise ConfigError("--part-minutes must be positive")


@dataclass
class ShardConfig:
    """Which slice of the data this process scores. None: the SLURM array task, else 0/1; torchrun
    workers split it further (rmscore/distributed/env.py)."""

    index: int | None = None
    count: int | None = None

    @classmethod
    def parse(cls, text: str | None) -> "ShardConfig":
        if not text:
            return cls()
        try:
            index, count = (int(x) for x in text.split("/"))
        except ValueError:
            raise ConfigError(f"--shard must look like INDEX/COUNT, got {text!r}") from None
        if not 0 <= index < count:
            raise ConfigError(f"--shard {text}: INDEX must be in [0, COUNT)")
        return cls(index, count)


@dataclass
class RayConfig:
    """`score --ray`: the windows are scored by a pool of Ray actors, each holding the model
    (rmscore/ray/pool.py); this process still reads the input and writes every part."""

    address: str = "local"  # local: start Ray on this machine; auto: the running cluster; or ray://host:10001
    actors: int | None = None  # None: one per gpus_per_actor GPUs of the cluster; 1 on a cluster without GPUs
    gpus_per_actor: float | None = None  # None: 1 when the cluster has GPUs, else 0
    in_flight: int = 2  # windows sent to each actor ahead of the one it scores: memory stays flat

    def __post_init__(self):
        if not isinstance(self.address, str) or not self.address.strip():
            raise ConfigError("--ray needs an address", "local, auto, or the cluster's, e.g. ray://head:10001")
        if self.actors is not None and self.actors <= 0:
            raise ConfigError(f"--ray-actors must be positive, got {self.actors}")
        if self.gpus_per_actor is not None and not 0 <= self.gpus_per_actor < math.inf:
            raise ConfigError(f"--ray-gpus-per-actor must be >= 0, got {self.gpus_per_actor}")
        if self.in_flight <= 0:
            raise ConfigError(f"in_flight must be positive, got {self.in_flight}")


@dataclass
class ScoreConfig:
    input: InputConfig
    output: OutputConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    shard: ShardConfig = field(default_factory=ShardConfig)
    progress: bool | None = None  # None: a bar on a terminal, log lines otherwise
    ray: RayConfig | None = None  # None: score in this process (and its torchrun/SLURM siblings)


QUERY_FORMATS = ("text", "split")


@dataclass
class ServeConfig:
    """`rmscore serve`: where it listens and how it batches and bounds the work of all clients."""

    host: str = "127.0.0.1"  # loopback only; --host 0.0.0.0 opens it, the user's explicit choice
    port: int = 8000  # 0: any free port (the log line says which)
    max_wait_ms: float = 5.0  # after the first waiting row, wait at most this long for a full token budget
    max_queue: int = 16384  # rows admitted and not yet answered; past it: 503 with Retry-After
    max_rows_per_request: int = 16384  # rows to score in one request; more: 413
    max_body_mb: float = 64.0  # one request body; more: 413
    api_key: str | None = None  # Bearer token required on every route but /health
    # /get_reward: "text" scores each query as the policy rendered it (same chat template);
    # "split" cuts it at its prompt and renders prompt + response with the model's own template.
    query_format: str = "text"
    unscored_reward: float | None = None  # /get_reward's value for a row that cannot be scored (None: null)
    drain_timeout_s: float = 30.0  # after SIGTERM, answer what is in flight for this long, then 503 the rest
    read_timeout_s: float = 30.0  # a request body must be all in within this long of its headers; else 408

    def __post_init__(self):
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be in 0-65535, got {self.port}")
        if self.max_wait_ms < 0:
            raise ConfigError(f"--max-wait-ms must be >= 0, got {self.max_wait_ms}")
        for name in ("max_queue", "max_rows_per_request", "max_body_mb", "drain_timeout_s", "read_timeout_s"):
            if getattr(self, name) <= 0:
                option = name.removesuffix("_s").replace("_", "-")
                raise ConfigError(f"--{option} must be positive, got {getattr(self, name)}")
        if self.query_format not in QUERY_FORMATS:
            raise ConfigError(f"unknown --query-format {self.query_format!r}", f"choose {' or '.join(QUERY_FORMATS)}")
        if self.api_key == "":
            raise ConfigError("--api-key is empty", "give a key, or leave RMSCORE_API_KEY unset")

    @property
    def row_limit(self) -> int:
        """Most rows one request may hold: more could never be admitted to a queue of max_queue."""
        return min(self.max_rows_per_request, self.max_queue)


PAIR_RULES = ("max-min", "max-random", "best-vs-rest", "all-pairs")
PAIR_FORMATS = ("auto", "conversational", "standard", "simpo", "kto")


@dataclass
class PairConfig:
    """`rmscore build-pairs`: which scored completions of a prompt become (chosen, rejected) pairs."""

    inputs: list[str]  # scored Parquet files or folders (every part-*.parquet below a folder)
    output: str  # the pairs Parquet file; its drop report goes next to it (.report.json)
    rule: str = "max-min"
    format: str = "auto"  # auto: conversational, or standard when every prompt was plain text
    score_column: str = "score"  # any numeric column (score_min of a PRM), an ArmoRM objective or rewards[i]
    min_margin: float = 0.0  # a pair needs chosen - rejected >= min_margin (and > 0: ties never pair)
    min_completions: int = 2  # distinct scored completions a prompt needs to give any pair
    pairs_per_prompt: int | None = None  # cap; None: 1 for max-random, no cap for best-vs-rest/all-pairs
    seed: int = 0  # max-random draws from Random(f"{seed}:{prompt_id}"): independent of order and sharding
    buckets: int | None = None  # prompt-hash buckets processed one at a time; None: from the input size
    overwrite: bool = False
    max_length_ratio: float | None = None  # drop a candidate whose chosen text is over R x the rejected's
    allow_mixed_models: bool = False  # pair scores of inputs whose recorded models differ
    allow_partial: bool = False  # read a scored folder whose shards have not all finished
    min_agreement: float | None = None  # combined input: share of models that must prefer chosen

    def __post_init__(self):
        if self.min_agreement is not None and not 0 <= self.min_agreement <= 1:
            raise ConfigError(f"--min-agreement must be in [0, 1], got {self.min_agreement}",
                              "e.g. 1 keeps pairs every model orders the same way, 0.5 a majority")
        if self.rule not in PAIR_RULES:
            raise ConfigError(f"unknown --rule {self.rule!r}", f"choose one of {', '.join(PAIR_RULES)}")
        if self.format not in PAIR_FORMATS:
            raise ConfigError(f"unknown --format {self.format!r}", f"choose one of {', '.join(PAIR_FORMATS)}")
        if not self.inputs:
            raise ConfigError("no scored input given", "name the folder written by rmscore score -o")
        if not (self.min_margin >= 0 and math.isfinite(self.min_margin)):
            raise ConfigError(f"--min-margin must be a finite number >= 0, got {self.min_margin}")
        if self.min_completions < 2:
            raise ConfigError(f"--min-completions must be at least 2, got {self.min_completions}")
        if self.max_length_ratio is not None and not (1 <= self.max_length_ratio < math.inf):
            raise ConfigError(f"--max-length-ratio must be a number >= 1, got {self.max_length_ratio}",
                              "e.g. 1.5 keeps pairs whose chosen is at most 1.5 times as long as the rejected")
        for name in ("pairs_per_prompt", "buckets"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {value}")
        if self.rule == "max-min" and self.pairs_per_prompt not in (None, 1):
            raise ConfigError(
                "--pairs-per-prompt has no effect with --rule max-min (one pair per prompt)",
                "use --rule best-vs-rest, all-pairs or max-random for several pairs per prompt",
            )

    @property
    def cap(self) -> int | None:
        """Most pairs one prompt gives."""
        if self.rule == "max-min":
            return 1
        return self.pairs_per_prompt or (1 if self.rule == "max-random" else None)


COMBINE_METHODS = ("mean-z", "mean", "min", "vote")


@dataclass
class CombineConfig:
    """`rmscore combine`: one scored folder from the scores of several reward models over the same input."""

    inputs: list[str]  # scored folders of rmscore score, one per model, over the same input
    output: str  # a folder, written as a scored folder with model_scores
    method: str = "mean-z"  # mean-z: z-scores per model over its usable rows, averaged; mean; min; vote
    score_column: str = "score"  # read from every input (an ArmoRM objective, score_min, ...)
    buckets: int | None = None
    overwrite: bool = False

    def __post_init__(self):
        if self.method not in COMBINE_METHODS:
            raise ConfigError(f"unknown --method {self.method!r}", f"choose one of {', '.join(COMBINE_METHODS)}")
        if len(self.inputs) < 2:
            raise ConfigError("combine needs the scored folders of at least two reward models",
                              "e.g. rmscore combine scored-a scored-b -o ensemble")
        if self.buckets is not None and self.buckets <= 0:
            raise ConfigError(f"--buckets must be positive, got {self.buckets}")


SFT_SELECT = ("per-prompt", "overall")
SFT_FORMATS = ("conversational", "prompt-completion")


@dataclass
class SftConfig:
    """`rmscore build-sft`: the best scored completions, as SFT data (rejection sampling)."""

    inputs: list[str]  # scored Parquet files or folders
    output: str  # the SFT Parquet file; its report goes next to it (.report.json)
    select: str = "per-prompt"  # per-prompt: the K best of each prompt; overall: the best fraction of all
    per_prompt: int | None = None  # K; None: 1 (per-prompt only)
    top_fraction: float | None = None  # overall: F in (0, 1]
    min_score: float | None = None  # on top of either: drop completions scoring below
    score_column: str = "score"
    format: str = "conversational"  # TRL's `messages`, or prompt-completion (prompt + completion lists)
    baseline_out: str | None = None  # a seeded random selection of the same size, for comparison
    seed: int = 0  # the baseline's draw: Random(f"{seed}:{prompt_id}"), or draw(seed, key) overall
    buckets: int | None = None
    overwrite: bool = False
    allow_mixed_models: bool = False
    allow_partial: bool = False  # read a scored folder whose shards have not all finished

    def __post_init__(self):
        if self.select not in SFT_SELECT:
            raise ConfigError(f"unknown --select {self.select!r}", f"choose one of {', '.join(SFT_SELECT)}")
        if self.format not in SFT_FORMATS:
            raise ConfigError(f"unknown --format {self.format!r}", f"choose one of {', '.join(SFT_FORMATS)}")
        if not self.inputs:
            raise ConfigError("no scored input given", "name the folder written by rmscore score -o")
        if self.per_prompt is not None and self.per_prompt < 1:
            raise ConfigError(f"--per-prompt must be at least 1, got {self.per_prompt}")
        if self.select == "overall" and self.per_prompt is not None:
            raise ConfigError("--per-prompt applies to --select per-prompt", "drop --per-prompt, or --select overall")
        if self.select == "overall" and self.top_fraction is None:
            raise ConfigError("--select overall needs --top-fraction", "e.g. --top-fraction 0.1 keeps the best 10%")
        if self.select == "per-prompt" and self.top_fraction is not None:
            raise ConfigError("--top-fraction applies to --select overall", "add --select overall, or drop it")
        if self.top_fraction is not None and not 0 < self.top_fraction <= 1:
            raise ConfigError(f"--top-fraction must be in (0, 1], got {self.top_fraction}")
        if self.min_score is not None and not math.isfinite(self.min_score):
            raise ConfigError(f"--min-score must be a finite number, got {self.min_score}")
        if self.buckets is not None and self.buckets <= 0:
            raise ConfigError(f"--buckets must be positive, got {self.buckets}")

    @property
    def k(self) -> int:
        return self.per_prompt or 1


@dataclass
class InspectConfig:
    """`rmscore inspect`: a look at scored output or a pairs file before training on it."""

    inputs: list[str]  # scored folders / part files, or one pairs file from build-pairs
    output: str | None = None  # folder for inspect.json and the PNGs; None: default_inspect_dir()
    score_column: str = "score"  # scored output only: the numeric column to look at
    texts: bool = True  # False (--no-text): no completion or prompt text printed or written
    sample_rows: int = 100_000  # rows drawn for the scatter and the wide columns (objectives, steps)
    allow_partial: bool = False  # read a scored folder whose shards have not all finished
    html_rows: int = 2000  # rows report.html embeds (extremes, then a seeded random draw); 0: summary only

    def __post_init__(self):
        if not self.inputs:
            raise ConfigError("nothing to inspect", "name a folder written by rmscore score, or a pairs file")
        if self.sample_rows < 1:
            raise ConfigError(f"--sample-rows must be positive, got {self.sample_rows}")
        if self.html_rows < 0:
            raise ConfigError(f"--html-rows must be 0 or more, got {self.html_rows}")


def default_inspect_dir(input_path: str) -> str:
    """NAME-inspect beside the input: demo-out/scored -> demo-out/scored-inspect."""
    path = Path(input_path.rstrip("/") or "/")
    path = path if path.name else path.resolve()  # "." names no folder: use where it points
    return str(path.with_name(f"{path.name.split('.')[0] or 'input'}-inspect"))


@dataclass
class BestOfNConfig:
    scored: str  # a folder written by `rmscore score`, or one Parquet file of it
    label_column: str  # bool or 0/1 per completion (or a list aligned with completion_index)
    answer_column: str | None = None  # final answers: adds majority and reward-weighted votes
    score_column: str = "score"
    ns: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64])
    vote_weight: str = "exp"  # exp: exp(score), for logit rewards; score: raw scores >= 0 (PRM probabilities)
    samples: int = 2000  # weighted vote only: Monte-Carlo draws for a prompt with too many subsets
    seed: int = 0
    output: str | None = None  # folder for bestofn.json and bestofn.png
    allow_partial: bool = False  # read a scored folder whose shards have not all finished

    def __post_init__(self):
        if not self.ns or min(self.ns) < 1:
            raise ConfigError(f"--n needs positive numbers, got {self.ns}")
        if self.vote_weight not in ("exp", "score"):
            raise ConfigError(f"unknown --vote-weight {self.vote_weight!r}", "choose exp or score")
        if self.samples < 2:
            raise ConfigError("--samples must be at least 2")


@dataclass
class McColumns:
    """Multiple-choice rows: a question with either one column of {choices, labels} (TruthfulQA's
    mc1_targets) or separate choices and labels columns. None: detect from the standard names."""

    question: str | None = None  # "question", else "prompt"
    targets: str | None = None  # "mc1_targets"
    choices: str | None = None  # "choices"
    labels: str | None = None  # "labels"
    seed: int = 0  # choices are shuffled with this seed before scoring, so position cannot leak


@dataclass
class EvalConfig:
    score: ScoreConfig  # input, model and batching; score.output is the score cache folder
    output: str  # eval.json (and margins.png) go here
    task: str = "auto"  # auto | pairs | mc
    subset_column: str | None = None  # an input column: accuracy per value
    mc: McColumns = field(default_factory=McColumns)
    rescore: bool = False  # score again even if the cache matches
    score_column: str = "score"  # or one objective of a multi-objective model (read from the cache: no rescoring)

    def __post_init__(self):
        if self.task not in ("auto", "pairs", "mc"):
            raise ConfigError(f"unknown --task {self.task!r}", "choose auto, pairs or mc")


def default_eval_dir(input_path: str, model: str) -> str:
    """rmscore-eval/<input name>-<model name>: one folder per (data, model), so reruns find the cache."""
    data = Path(input_path.rstrip("/")).name.split(".")[0] or "input"
    return str(Path("rmscore-eval") / f"{data}-{Path(model.rstrip('/')).name}")
