"""Every option of `pairforge train`, with the reference trainer's names and the pix2pix paper's defaults.

The pydantic model is the single source of truth: the CLI builds its flags from these fields, and a run
writes the effective values to `runs/<name>/config.json`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    model_serializer,
    model_validator,
)

from pairforge.errors import UsageError
from pairforge.parsing import parse_choices, parse_size
from pairforge.train.codings import Codings

GeneratorName = Literal["unet_256", "unet_128", "resnet_9blocks", "resnet_6blocks"]
DiscriminatorName = Literal["basic", "n_layers", "pixel", "multiscale"]
NormName = Literal["batch", "instance", "none"]
LOGGERS = ("tensorboard", "wandb")


def _to_size(value: Any) -> tuple[int, int]:
    """`256`, `"256"`, `"512x256"` or `[512, 256]` -> (width, height)."""
    if isinstance(value, int):
        value = str(value)
    if isinstance(value, str):
        try:
            return parse_size(value)
        except UsageError:
            raise ValueError("expected N or WxH with positive sides, e.g. 256 or 512x256") from None
    width, height = value
    return int(width), int(height)


def _size_text(size: tuple[int, int]) -> str:
    width, height = size
    return str(width) if width == height else f"{width}x{height}"


Size = Annotated[tuple[int, int], BeforeValidator(_to_size), PlainSerializer(_size_text)]
"""(width, height); written as `N` or `WxH` in config.json, as on the command line."""


def _to_range(value: Any) -> tuple[float, float]:
    """`"0,80"` or `[0, 80]` -> (0.0, 80.0), low < high."""
    parts = value.split(",") if isinstance(value, str) else value
    try:
        low, high = (float(p) for p in parts)
    except (TypeError, ValueError):
        raise ValueError("expected LO,HI, e.g. 0,80") from None
    if not low < high:
        raise ValueError("LO must be below HI")
    return low, high


ValueRange = Annotated[tuple[float, float], BeforeValidator(_to_range), PlainSerializer(lambda r: f"{r[0]:g},{r[1]:g}")]
"""(low, high); written as `LO,HI` in config.json, as on the command line."""


def size_multiple(net_g: str) -> int:
    """Input sides must be multiples of this: 2^downsamplings for a U-Net, 4 for a ResNet generator."""
    return {"unet_256": 256, "unet_128": 128}.get(net_g, 4)


def size_problem(size: tuple[int, int], net_g: str) -> str | None:
    """Why (width, height) cannot go through `net_g`, naming the valid sizes; None when it can."""
    multiple = size_multiple(net_g)
    if not (size[0] % multiple or size[1] % multiple):
        return None
    nearest = "x".join(str(max(multiple, round(side / multiple) * multiple)) for side in size)
    return (
        f"--netG {net_g} needs sides divisible by {multiple} (smallest valid: {multiple}x{multiple};"
        f" nearest: {nearest})"
    )


def _opt(default: Any, panel: str, help: str, **kwargs: Any) -> Any:
    return Field(default, description=help, json_schema_extra={"panel": panel}, **kwargs)


class TrainConfig(BaseModel):
    """The effective options of one training run."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    # data
    dataroot: Path | None = _opt(
        None,
        "Data",
        "Dataset root: <phase>/ (ab), <phase>/A + <phase>/B (split), <phase>A + <phase>B (cycle_gan), or webdataset"
        " shards, streamed: a folder of <phase>-NNNNNN.tar or a URL pattern 'dir/train-{000000..000009}.tar'.",
    )
    phase: str = _opt("train", "Data", "Split folder to train on.")
    direction: Literal["AtoB", "BtoA"] = _opt("AtoB", "Data", "AtoB translates A (left half) into B.")
    preprocess: Literal["resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none"] = _opt(
        "resize_and_crop", "Data", "Resize at load time, then random crop on the device."
    )
    load_size: Size = _opt((286, 286), "Data", "Size images are resized to when loaded: N or WxH.")
    crop_size: Size = _opt((256, 256), "Data", "Size of the random training crops: N or WxH.")
    no_flip: bool = _opt(False, "Data", "Do not flip pairs horizontally at random.")
    serial_batches: bool = _opt(False, "Data", "Take pairs in order instead of shuffling each epoch.")
    max_dataset_size: int | None = _opt(None, "Data", "Use at most this many pairs (sorted by key).", gt=0)
    input_nc: int = _opt(3, "Data", "Input channels: 1 gray, 3 RGB, 4 RGBA, more from TIFF/.npy.", ge=1)
    output_nc: int = _opt(3, "Data", "Output channels: 1 gray, 3 RGB, 4 RGBA, more from TIFF/.npy.", ge=1)
    value_range: ValueRange | None = _opt(
        None,
        "Data",
        "LO,HI: the values of 16-bit/float data that map to [-1, 1], in the dataset's units (metres for prep's"
        " gray16 depth). Default: the manifest's depth range, else the dtype's (0..65535; float 0..1).",
    )
    codings: Codings | None = Field(
        None, description="Filled in by training from the data: how stored values map to [-1, 1]."
    )
    # networks
    model: Literal["pix2pix", "cycle_gan"] = _opt(
        "pix2pix",
        "Model",
        "pix2pix (paired) or cycle_gan (unaligned trainA/trainB; its defaults: resnet_9blocks, instance norm,"
        " no dropout, lsgan, unless given).",
    )
    netG: GeneratorName = _opt("unet_256", "Model", "Generator architecture.")
    netD: DiscriminatorName = _opt("basic", "Model", "basic = 70x70 PatchGAN; n_layers uses --n_layers_D.")
    n_layers_D: int = _opt(3, "Model", "PatchGAN depth: 1..5 = 16/34/70/142/286 patch.", ge=1, le=5)
    num_D: int = _opt(2, "Model", "Number of scales of --netD multiscale.", ge=1, le=4)
    ngf: int = _opt(64, "Model", "Generator filters in the first conv layer.", gt=0)
    ndf: int = _opt(64, "Model", "Discriminator filters in the first conv layer.", gt=0)
    norm: NormName = _opt("batch", "Model", "Normalization layers.")
    no_dropout: bool = _opt(False, "Model", "No dropout in the generator.")
    init_type: Literal["normal", "xavier", "kaiming", "orthogonal"] = _opt("normal", "Model", "Weight init.")
    init_gain: float = _opt(0.02, "Model", "Scale of normal/xavier/orthogonal init.", gt=0)
    noise_nc: int = _opt(0, "Model", "Extra N(0,1) noise channels fed to the generator.", ge=0)
    # losses
    gan_mode: Literal["vanilla", "lsgan", "hinge", "wgangp"] = _opt("vanilla", "Loss", "Adversarial loss.")
    lambda_L1: float = _opt(100.0, "Loss", "Weight of the reconstruction loss.", ge=0)
    recon_loss: Literal["l1", "l2"] = _opt("l1", "Loss", "Reconstruction loss between output and target.")
    lambda_gp: float = _opt(10.0, "Loss", "Gradient penalty weight (--gan_mode wgangp).", ge=0)
    no_condition_D: bool = _opt(False, "Loss", "Unconditional D: it sees the output only, not the input.")
    no_gan: bool = _opt(False, "Loss", "No discriminator: reconstruction loss only.")
    lambda_A: float = _opt(10.0, "Loss", "cycle_gan: weight of the cycle loss A -> B -> A.", ge=0)
    lambda_B: float = _opt(10.0, "Loss", "cycle_gan: weight of the cycle loss B -> A -> B.", ge=0)
    lambda_identity: float = _opt(
        0.5, "Loss", "cycle_gan: identity loss weight, relative to lambda_A/B (0 = no identity terms).", ge=0
    )
    pool_size: int = _opt(50, "Loss", "cycle_gan: fakes kept per discriminator (0 = no pool).", ge=0)
    lambda_perceptual: float = _opt(
        0.0, "Loss", "pix2pix: weight of a VGG perceptual loss (L1 of features) between output and target.", ge=0
    )
    vgg_weights: Path | None = _opt(
        None, "Loss", "torchvision vgg16/vgg19 ImageNet weights (.pth or .safetensors) for --lambda_perceptual."
    )
    # optimization
    optimizer: Literal["adam", "sgd"] = _opt("adam", "Optimizer", "Optimizer of G and D.")
    lr: float = _opt(0.0002, "Optimizer", "Initial learning rate.", gt=0)
    beta1: float = _opt(0.5, "Optimizer", "Adam beta1.", ge=0, lt=1)
    beta2: float = _opt(0.999, "Optimizer", "Adam beta2.", ge=0, lt=1)
    momentum: float = _opt(0.9, "Optimizer", "SGD momentum.", ge=0, lt=1)
    batch_size: int = _opt(1, "Optimizer", "Pairs per step.", gt=0)
    n_epochs: int = _opt(100, "Optimizer", "Epochs at the initial learning rate.", ge=0)
    n_epochs_decay: int = _opt(100, "Optimizer", "Epochs of linear decay of the learning rate to zero.", ge=0)
    # run
    name: str = _opt("", "Run", "Run name: outputs go to <runs_dir>/<name>/ (default: <dataroot name>_<model>).")
    runs_dir: Path = _opt(Path("runs"), "Run", "Folder that holds the runs.")
    seed: int = _opt(0, "Run", "Seed of weights init, data order, crops and dropout.")
    max_steps: int | None = _opt(None, "Run", "Stop this invocation at global step N (saving a checkpoint).", gt=0)
    print_freq: int = _opt(100, "Run", "Steps between loss read-backs (log.jsonl, NaN check).", gt=0)
    display_freq: int = _opt(400, "Run", "Steps between sample grids in samples/.", gt=0)
    save_latest_freq: int = _opt(5000, "Run", "Steps between checkpoints/latest.safetensors.", gt=0)
    save_epoch_freq: int = _opt(5, "Run", "Epochs between checkpoints/epoch_NNN.safetensors.", gt=0)
    logger: str = _opt(
        "", "Run", "Also log to tensorboard and/or wandb, comma-separated (<run>/tensorboard/, <run>/wandb/)."
    )
    # speed
    device: str = _opt("auto", "Speed", "auto, cpu, cuda or cuda:N.")
    fast: bool | None = _opt(None, "Speed", "bf16, channels_last, fused Adam, compile, CUDA graph (default: on CUDA).")
    compile: bool = _opt(True, "Speed", "Fast mode: torch.compile the networks.")
    cuda_graph: bool = _opt(True, "Speed", "Fast mode: replay the whole training step as one CUDA graph.")
    # several GPUs (DDP)
    gpus: int = _opt(
        1, "Distributed", "Ranks on this node: > 1 re-launches through torchrun (DDP); --batch_size is per rank.", gt=0
    )
    sync_bn: bool = _opt(False, "Distributed", "Synchronise BatchNorm statistics across GPUs (default: per GPU).")
    lr_scale: Literal["none", "linear"] = _opt(
        "none", "Distributed", "linear: multiply --lr by the number of ranks (the global batch grows with them)."
    )
    world_size: int = Field(1, ge=1, description="Ranks the run trains on: set by the run, not a flag.")

    @model_validator(mode="before")
    @classmethod
    def _model_defaults(cls, data: Any) -> Any:
        """cycle_gan's own defaults for the options it does not share with pix2pix, where not given."""
        if isinstance(data, dict) and data.get("model") == "cycle_gan":
            data = CYCLE_GAN_DEFAULTS | data
        return data

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("name") and data.get("dataroot"):
            data = {**data, "name": default_name(data["dataroot"], data.get("model", "pix2pix"))}
        return data

    @model_validator(mode="before")
    @classmethod
    def _drop_derived(cls, data: Any) -> Any:
        """`global_batch_size` is written beside the options (see `_with_global_batch`), never read back."""
        if isinstance(data, dict) and "global_batch_size" in data:
            data = {k: v for k, v in data.items() if k != "global_batch_size"}
        return data

    @model_serializer(mode="wrap")
    def _with_global_batch(self, handler: Any) -> dict[str, Any]:
        """config.json and checkpoints also record the global batch: per-rank batch x ranks (in a dump that
        has the batch size)."""
        data = handler(self)
        if "batch_size" in data:
            data["global_batch_size"] = self.batch_size * self.world_size
        return data

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.preprocess == "resize_and_crop" and any(
            c > s for c, s in zip(self.crop_size, self.load_size, strict=True)
        ):
            raise ValueError(
                f"--crop_size {_size_text(self.crop_size)} is larger than --load_size {_size_text(self.load_size)}"
            )
        problem = size_problem(self.crop_size, self.netG)
        if problem and self.preprocess in ("resize_and_crop", "crop", "scale_width_and_crop"):
            raise ValueError(f"--crop_size {_size_text(self.crop_size)}: {problem}")
        if self.logger:
            try:
                self.logger = ",".join(parse_choices(self.logger, "--logger", LOGGERS))
            except UsageError as exc:
                raise ValueError(str(exc).partition(": ")[2]) from None
        if self.no_gan and self.lambda_L1 == 0:
            raise ValueError("--no_gan with --lambda_L1 0 leaves nothing to train")
        if self.lambda_perceptual > 0 and self.vgg_weights is None:
            raise ValueError("--lambda_perceptual needs --vgg_weights PATH (torchvision's vgg16-397923af.pth)")
        if self.model == "cycle_gan":
            if self.no_gan or self.noise_nc or self.lambda_perceptual:
                raise ValueError(
                    "--no_gan, --noise_nc and --lambda_perceptual are pix2pix options, not for --model cycle_gan"
                )
            if self.lambda_identity > 0 and self.input_nc != self.output_nc:
                raise ValueError("--lambda_identity needs --input_nc equal to --output_nc (use --lambda_identity 0)")
        return self

    @property
    def total_epochs(self) -> int:
        return self.n_epochs + self.n_epochs_decay

    def lr_factor(self, epoch: int) -> float:
        """Linear decay of the reference: constant for `n_epochs`, then to 1/(n_epochs_decay+1) (epoch is 1-based)."""
        return 1.0 - max(0, epoch - self.n_epochs) / float(self.n_epochs_decay + 1)


CYCLE_GAN_DEFAULTS: dict[str, Any] = {
    "netG": "resnet_9blocks",
    "norm": "instance",
    "no_dropout": True,
    "gan_mode": "lsgan",
}
"""What --model cycle_gan changes from the pix2pix defaults (the CycleGAN paper / reference), unless given:
in Python a key absent from the values; on the command line a flag not typed (the CLI drops it)."""


def default_name(dataroot: str | Path, model: str = "pix2pix") -> str:
    """`datasets/facades` -> `facades_pix2pix`; shards `datasets/facades/train-{000000..000009}.tar` -> the same."""
    path = Path(dataroot)
    return f"{(path.parent if path.suffix == '.tar' else path).resolve().name}_{model}"


def usage_error(error: ValidationError) -> UsageError:
    """The first problem of a pydantic ValidationError as one line: `--flag 'value': reason`."""
    first = error.errors()[0]
    message = first["msg"].removeprefix("Value error, ")
    if not first["loc"]:
        return UsageError(message)
    return UsageError(f"--{first['loc'][0]} {first.get('input')!r}: {message}")


def make_config(**values: Any) -> TrainConfig:
    """TrainConfig(**values), turning validation errors into a one-line UsageError."""
    try:
        return TrainConfig(**values)
    except ValidationError as exc:
        raise usage_error(exc) from None
