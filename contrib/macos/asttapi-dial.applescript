-- asttapi dial as a handler of tel: and callto: links (docs/click-to-dial.md, "macOS").
-- Built into an app with osacompile; macOS hands it every link it opens.
-- A script app's shell has a short PATH: name asttapi by its full path
-- (`command -v asttapi` in Terminal) if it is not in /usr/local/bin.
on open location theURL
	try
		do shell script "/usr/local/bin/asttapi dial --notify " & quoted form of theURL
	end try
end open location
