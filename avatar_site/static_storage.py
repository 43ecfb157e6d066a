"""Static files with content hashes in their names, ES module imports included."""

from whitenoise.storage import CompressedManifestStaticFilesStorage


class HashedStaticStorage(CompressedManifestStaticFilesStorage):
    # Django's documented switch: rewrite `import … from "./x.js"` to the hashed names too, so a page
    # of one deploy never loads a module of another.
    support_js_module_import_aggregation = True
