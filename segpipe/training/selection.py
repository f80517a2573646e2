"""Which validated checkpoint training keeps: the latest within the validation's noise of the best.

A validation split is often small (one field, a strip of one volume), and the scores of the
checks late in a run differ by less than that split's sampling noise: the highest of them is
then chosen by chance, often early, before the learning rate has decayed. Training keeps the
latest checkpoint whose score is within ``MARGIN`` standard errors of the best score (after the
one-standard-error rule of Breiman et al., *Classification and Regression Trees*, 1984, here
preferring the most trained model rather than the simplest); a checkpoint better than the later
ones by more than that is kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Standard errors of the best score that a later check may fall short of it and still be kept.
#: Two: the difference of two checks is noisier than one score (up to sqrt(2) times for independent
#: ones); on a 3D volume of 15 validation nuclei an early check 1.2 errors above the last scored
#: 0.08 SEG below it on the test strip (benchmarks/RESULTS.md, "The checkpoint kept").
MARGIN = 2.0


@dataclass
class CheckpointChoice:
    """Accumulates the validation checks of a run, in order, and says which to keep.

    Attributes:
        best: The best score so far (``-inf`` before any).
        noise: The standard error of that best score (0: the score has no known noise, and
            only a better or equal score replaces the kept checkpoint); a later check within
            ``MARGIN`` times it is kept.
    """

    best: float = -math.inf
    noise: float = 0.0

    def keeps(self, score: float, *, noise: float = 0.0) -> bool:
        """Record a check's ``score`` and its standard error ``noise``; whether its weights are now the ones to keep.

        A check is kept when it is the best so far, or within ``MARGIN`` of the best one's
        standard errors of it (a later checkpoint as good as the best within the noise). A NaN
        score is never kept.
        """
        if math.isnan(score):
            return False
        if score > self.best:
            self.best, self.noise = score, 0.0 if math.isnan(noise) else max(noise, 0.0)
            return True
        return score >= self.best - MARGIN * self.noise
