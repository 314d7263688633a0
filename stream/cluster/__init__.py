"""Cameras and archives sharded over a Ray cluster.

    driver (run_camera.py --cluster ADDRESS)                      node A                node B
    ClusterApp: assigns cameras, polls shards, fails over  <->  Shard actor         Shard actor
      -> the run's sinks (events, dashboard, web view, MQTT)      StreamApp:          StreamApp:
                                                                 its cameras'        its cameras'
                                                                 captures + engine   captures + engine

One shard (a plain Ray actor) per node runs the multi-camera runtime for the cameras it is given, with its
own engine, and opens their sources itself: the video is decoded where it is processed. Only predictions,
events, statistics and, when the web view is on, JPEG pictures travel to the driver, where the same sinks
as in one process take them. `address` parses --cluster without importing Ray; `shard` and `controller`
import it.
"""
