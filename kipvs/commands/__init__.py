"""One module per subcommand: each wires sources, desired state, facts, plan and runner."""
