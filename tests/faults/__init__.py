"""Fault injection: each test breaks something on purpose and checks what dlrun says, its exit code and
that nothing written earlier was lost."""
