"""State storage: where state-backed components' state lives, and the pin a load used."""

from defstate.state_storage.base import StateStorage, StateWrite
from defstate.state_storage.keys import decode_key, encode_key
from defstate.state_storage.local import LOCAL_STATE_DIRNAME, LocalStateStorage
from defstate.state_storage.management import ManagementType
from defstate.state_storage.state_info import StateInfo, StateVersion

__all__ = [
    "LOCAL_STATE_DIRNAME",
    "LocalStateStorage",
    "ManagementType",
    "StateInfo",
    "StateStorage",
    "StateVersion",
    "StateWrite",
    "decode_key",
    "encode_key",
]
