"""The sliding-window settings' bounds."""

import pytest
from pydantic import ValidationError

from segpipe.inference.params import InferenceParams


def test_an_overlap_past_0_9_is_refused():
    """--overlap 0.999 was taken: a 256 x 256 field then took 16,000 windows of a 128-pixel patch."""
    assert InferenceParams(overlap=0.9).overlap == 0.9
    with pytest.raises(ValidationError, match="less than or equal to 0.9"):
        InferenceParams(overlap=0.999)
