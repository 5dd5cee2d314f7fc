"""Defenses: training-time recipes (adversarial training), input transforms, detection, certification."""
