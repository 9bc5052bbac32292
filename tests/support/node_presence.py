"""Whether the test bed runs pods: the node part records itself as the component "node" in testbed.json."""

NO_NODE_REASON = ("the test bed has no node: no kubelet or container runtime runs pods, so nothing can become "
                  "Ready (testbed.json lists no 'node' among its components)")


def has_node(testbed):
    return "node" in (testbed.components or ())
