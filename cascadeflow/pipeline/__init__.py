"""The step pipeline: the one path every intercepted call walks, whatever client made it.

    step = admit.begin(runtime, request)    # decide, reserve, maybe stop or edit (caller's thread)
    response = send(*step.args, **step.kwargs)
    settle.finish(step, read_usage(...))    # cost replaces the reservation (caller's thread)
    # trace entries, scans that change nothing, spans and metrics: the background worker
"""

from cascadeflow.pipeline import observe
from cascadeflow.pipeline.admit import abegin, begin
from cascadeflow.pipeline.guard import record_findings
from cascadeflow.pipeline.runtime import CascadeRunner, Runtime, attempting, current, initialised, install
from cascadeflow.pipeline.settle import cut, cut_entry, fail, finish, output_cap, respond, settle_output
from cascadeflow.pipeline.step import Step

__all__ = ["CascadeRunner", "Runtime", "Step", "abegin", "attempting", "begin", "current", "cut",
           "cut_entry", "fail", "finish", "initialised", "install", "observe", "output_cap",
           "record_findings", "respond", "settle_output"]
