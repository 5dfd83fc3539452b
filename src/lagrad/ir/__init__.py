"""What a program is: primitives and their derivative rules, operations,
variables, equations and the Program that holds them, tracing, implicit
constraints, sparse patterns, strongly connected blocks and the bulk builder."""
