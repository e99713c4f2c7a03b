"""The checks themselves, run inside the interpreter being checked. Standard library only, Python 3.8+.

venvprune copies this package, as one zip archive Python runs (see :mod:`venvprune.verify.archive`), out of its
own tree for each run; the same archive becomes the final-stage ``<venv>/.venvprune/check.py``. So the import
logic exists once, and ``venvprune check``, the prune's verification and ``check.py`` judge alike.

* :mod:`.discovery`: what there is to check, read from metadata and the disk, nothing imported;
* :mod:`.loader`: the ELF objects as the dynamic loader meets them (``DT_NEEDED``, ``RPATH``, ``RUNPATH``);
* :mod:`.checklist`: the checks for a discovery, joined with what a manifest recorded;
* :mod:`.judge`: the verdict on each check, and the lines that say it;
* :mod:`.tasks`: one check in this process -- import a module, load an entry point, dlopen a library, ask
  ``importlib.metadata``;
* :mod:`.worker`: a long-lived process serving tasks over pipes;
* :mod:`.pool`: the workers, their scheduling, timeouts and retries;
* :mod:`.checker`: the final-stage command line;
* :mod:`.main`: ``python ARCHIVE discover|worker|[check options]``.

Rules for this package: nothing outside the standard library, no syntax newer than 3.8, no annotation that is
evaluated at run time (the ``__future__`` import keeps them strings), relative imports only (in the archive the
package has another name).
"""

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 2  # 2: each check with what was recorded of it; the distributions' versions
