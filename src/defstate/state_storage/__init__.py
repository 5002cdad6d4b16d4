"""State storage: where state-backed components' state lives, and the pin a load used.

The storages themselves live in ``local``, ``versioned`` and ``snapshots`` and are imported
where they are used, so that component modules importing ``ManagementType`` stay cheap.
"""

from defstate.state_storage.keys import decode_key, encode_key
from defstate.state_storage.management import ManagementType
from defstate.state_storage.state_info import StateInfo, StateVersion

__all__ = ["ManagementType", "StateInfo", "StateVersion", "decode_key", "encode_key"]
