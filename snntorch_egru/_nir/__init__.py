"""The rooms of :mod:`snntorch_egru.nir` (the public page): ``node`` (the EGRU node type),
``io`` (files and registration), ``export`` (model -> graph), ``step`` (node -> step module)
and ``graph`` (graph -> step module). Import from :mod:`snntorch_egru.nir`, not from here."""
