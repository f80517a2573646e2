"""The prediction stage's parameters: one model shared by the CLI, the flows and the deployments."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from segpipe.inference.params import InferenceParams, InstanceTiling

ExportFormat = Literal["tiff", "nifti", "ctc"]


class PredictParams(BaseModel):
    """How a model is applied, and what is written besides the label maps.

    ``inference`` holds overrides of the model card's sliding-window settings: only the fields
    set explicitly (``PredictParams(inference={"overlap": 0.25})``) replace the card's values.
    """

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    device: str = "auto"
    """Where to run the network: auto (CUDA when present), cpu, cuda or cuda:N."""
    inference: InferenceParams = Field(default_factory=InferenceParams)
    """Sliding-window settings; the fields set here override the model card's."""
    probabilities: bool = True
    """Keep the float16 class probabilities (and the distance map) in the prediction zarr."""
    exports: tuple[ExportFormat, ...] | None = None
    """Label files written next to the zarr: tiff, nifti, ctc (not set: tiff for 2D, none for 3D)."""
    instances: InstanceTiling = Field(default_factory=InstanceTiling)
    """How instance labelling splits frames too large to label whole."""
    in_memory: int = Field(1 << 24, ge=0)
    """Single-frame images whose output (voxels times output channels) has at most this many values
    are read at once, predicted in memory and written once (64 MiB as float32); larger ones stream,
    and a killed run resumes them. 0: stream every image."""
    resample: bool = True
    """Resample images whose pixel size differs from the model's to the model's, and the
    probabilities back to the image's own grid (off: the network sees the image as it is)."""
    input_order: Literal["choose", "stored"] = "choose"
    """A generalist's inputs (``cells-2d``: cytoplasm, then nuclei): ``choose`` them per image, a flat
    channel feeding no input and, of two channels, the one whose foreground covers more of the
    field (cells hold their nuclei) feeding the first (:mod:`segpipe.prediction.generalist_inputs`); ``stored``: channel j feeds input j (inputs
    no channel feeds are blank). Other models read their channels as stored."""

    @field_validator("device")
    @classmethod
    def _known_device(cls, device: str) -> str:
        from segpipe.models.device import is_device_name

        if not is_device_name(device):
            raise ValueError(f"{device!r} is not a device; use auto, cpu, cuda or cuda:N")
        return device

    def inference_for(self, validated: InferenceParams) -> InferenceParams:
        """The card's settings ``validated`` with the fields set here applied over them."""
        return validated.model_copy(update=self.inference.model_dump(exclude_unset=True))

    def export_formats(self, ndim: int) -> tuple[ExportFormat, ...]:
        return self.exports if self.exports is not None else (("tiff",) if ndim == 2 else ())
