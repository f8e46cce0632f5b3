# Rules of the dense stage (see workflow/scripts/ and src/utilann/).
