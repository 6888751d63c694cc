' Z-Image Studio (zaoxiang): start the studio with no console window (pythonw), from the environment
' that install.ps1 made. Double-click this file, or the shortcuts that point at it.
Option Explicit
Dim shell, fso, prefix, pythonw
Set shell = CreateObject("WScript.Shell")
Set fso = CreateObject("Scripting.FileSystemObject")
prefix = shell.ExpandEnvironmentStrings("%ZAOXIANG_PREFIX%")
If prefix = "%ZAOXIANG_PREFIX%" Or prefix = "" Then
    prefix = shell.ExpandEnvironmentStrings("%LOCALAPPDATA%") & "\zaoxiang-studio"
End If
pythonw = prefix & "\venv\Scripts\pythonw.exe"
If Not fso.FileExists(pythonw) Then
    MsgBox "Z-Image Studio is not installed (missing " & pythonw & "). Run install.bat first.", 16, "Z-Image Studio"
    WScript.Quit 1
End If
shell.CurrentDirectory = prefix
shell.Run """" & pythonw & """ -m studio", 0, False
