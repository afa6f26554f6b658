"""Graph construction from interaction logs (user-item, item transition, social, spatial).

Reserved for the graph issue: the layers that consume `jraph.GraphsTuple`s are in
`stjax.layers.graph`; this package will build those graphs from `stjax.data` logs.
"""
