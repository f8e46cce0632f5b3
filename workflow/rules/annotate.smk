# Rules of the annotate stage (see workflow/scripts/ and src/utilann/).
