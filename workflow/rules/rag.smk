# Rules of the rag stage (see workflow/scripts/ and src/utilann/).
