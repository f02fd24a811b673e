"""The forwarding engine: what moves a rule's events to its destination.

One batch of a rule (`ForwardingEngine.forward_batch`): read the due retries and the matching
events after the rule's cursor (`reader`), run them through the rule's transformation, deliver
them (`delivery`), settle every event's outcome (delivered, retry later, dead letter) and
write it with the new cursor (`recorder`). A replay page and a redrive go the same way.

At least once: a batch is delivered before its cursor moves, in one transaction with its
outcomes, so a worker that dies mid-batch makes the retried activity deliver the batch again
(every request carries the event ids: `webhook-id`, `messageId`). The cursor update checks the
cursor it started from, so two runs of one batch never both record it.

The Temporal activities (activities/forwarding.py) are a few lines that call the engine.
"""
