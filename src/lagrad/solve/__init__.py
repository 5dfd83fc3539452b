"""Satisfy the constraints and solve the multiplier and tangent systems:
forward evaluation, nonlinear block solves, linear solves inside cyclic
blocks, the System and the Solution."""
