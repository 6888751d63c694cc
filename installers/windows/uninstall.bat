@echo off
rem Z-Image Studio (zaoxiang): double-click to uninstall (keeps your images; add -Purge to delete them too).
chcp 65001 >nul
powershell -NoProfile -ExecutionPolicy Bypass -File "%~dp0uninstall.ps1" %*
pause
