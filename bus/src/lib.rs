//! mesh-bus: the message bus (under construction).
