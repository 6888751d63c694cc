# 造相 Z-Image Studio - Windows uninstaller: removes the environment and the shortcuts that
# install.ps1 added. Your images, settings and models stay unless you pass -Purge.
param(
    [switch]$Purge
)
$ErrorActionPreference = 'Stop'

$Prefix = if (Test-Path (Join-Path $PSScriptRoot 'installed-files.txt')) { $PSScriptRoot }
          elseif ($env:ZAOXIANG_PREFIX) { $env:ZAOXIANG_PREFIX }
          else { Join-Path $env:LOCALAPPDATA 'zaoxiang-studio' }
$VenvPython = Join-Path $Prefix 'venv\Scripts\python.exe'
if (-not (Test-Path $Prefix)) { Write-Host "uninstall: nothing installed at $Prefix"; exit 1 }

$UserDirs = @()
if ($Purge -and (Test-Path $VenvPython)) {
    $UserDirs = & $VenvPython -c "from studio.core.paths import get_paths; p = get_paths(); print(chr(10).join(str(d) for d in (p.data_dir, p.config_dir, p.cache_dir, p.log_dir)))"
}

$Manifest = Join-Path $Prefix 'installed-files.txt'
if (Test-Path $Manifest) {
    foreach ($file in Get-Content $Manifest -Encoding UTF8) {
        if ($file -and (Test-Path -LiteralPath $file)) { Remove-Item -LiteralPath $file -Force }
    }
}
# This script may live inside $Prefix: leave the folder first.
Set-Location $env:TEMP
Remove-Item -LiteralPath $Prefix -Recurse -Force

if ($Purge) {
    foreach ($dir in $UserDirs) {
        if ($dir -and (Test-Path -LiteralPath $dir) -and ($dir -ne $env:USERPROFILE)) {
            Remove-Item -LiteralPath $dir -Recurse -Force
        }
    }
    Write-Host 'Removed 造相 Z-Image Studio and all of its data (images, settings, logs, cache).'
} else {
    Write-Host 'Removed 造相 Z-Image Studio. Your images and settings are kept (run with -Purge to delete them).'
}
