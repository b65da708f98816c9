"""SuiteParams.validate: refuses a deployment whose numbers would break the protocol."""

from __future__ import annotations

from dataclasses import replace

import pytest

from verinfer.chain.deploy import DISPUTE_MOVES_MAX, SuiteParams
from verinfer.errors import ConfigError


def test_defaults_are_valid() -> None:
    SuiteParams().validate()


def test_stake_must_stay_slashable_through_a_claim_and_its_dispute() -> None:
    base = SuiteParams()
    needed = base.challenge_window_s + DISPUTE_MOVES_MAX * base.move_time_s
    replace(base, unbonding_delay_s=needed).validate()
    with pytest.raises(ConfigError, match="unbonding_delay_s"):
        replace(base, unbonding_delay_s=needed - 1).validate()
    with pytest.raises(ConfigError, match="unbonding_delay_s"):
        replace(base, move_time_s=base.unbonding_delay_s).validate()


@pytest.mark.parametrize(
    "field, value",
    [("game_fee_bps", 5_001), ("forced_rate_ppm", 1_000_001), ("move_time_s", 0),
     ("jackpot_fee_wei", -1), ("min_stake", 0)],
)  # fmt: skip
def test_out_of_range_fields_are_refused(field: str, value: int) -> None:
    with pytest.raises(ConfigError, match=field):
        replace(SuiteParams(), **{field: value}).validate()
