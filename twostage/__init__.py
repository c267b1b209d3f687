"""The product's roof: the ``twostage`` command over every stage (:mod:`twostage.cli`), the
preset listing ``twostage info`` and the whole-pipeline ``twostage demo``. Nothing below it
imports it."""
