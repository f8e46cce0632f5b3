# Rules of the train stage (see workflow/scripts/ and src/utilann/).
