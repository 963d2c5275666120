import pluggy
hookspec = pluggy.HookspecMarker("qf")
hookimpl = pluggy.HookimplMarker("qf")
