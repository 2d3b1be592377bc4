"""Hot standby: two bridges per PBX, one publishing, the other ready to take over.

* :mod:`bridge.ha.event_id`: the PBX-wide identity of an event, alike on both members;
* :mod:`bridge.ha.follower`: the standby's view of its journal, retired by checkpoints;
* :mod:`bridge.ha.lock`: the broker-held lock (an exclusive queue) and the checkpoints;
* :mod:`bridge.ha.member`: one server's member of the pair, the pipeline's hooks.
"""
