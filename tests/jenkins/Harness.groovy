// A step-recording harness for the tfgov Jenkins shared library, in the spirit of
// JenkinsPipelineUnit: the library's vars/ scripts and a Jenkinsfile body run under plain Groovy
// with Jenkins' steps stubbed (sh, stage, withEnv, withCredentials, usernamePassword,
// archiveArtifacts, junit, error, catchError, echo, checkout, node). Every step call is recorded;
// every sh string is checked for the secret values of the credentials the scenario defines.
//
//   groovy Harness.groovy LIBRARY_DIR JENKINSFILE [--secret ID=USER:PASSWORD]... [--fail STAGE]
//
// Prints one JSON object: {"calls": [...], "error": null | "message", "violations": [...]}.
// `--fail STAGE` makes the sh of that tfgov stage exit non-zero (as a failing gate would).

import groovy.json.JsonOutput
import org.codehaus.groovy.control.CompilerConfiguration

class HarnessError extends RuntimeException {
    HarnessError(String message) { super(message) }
}

class Recorder {
    List calls = []
    List violations = []
    Map<String, List> credentials = [:]
    Map<String, String> env = [:]
    Set<String> failStages = [] as Set

    String expand(String text) {
        text.replaceAll(/\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?/) { all, name -> env.containsKey(name) ? env[name] : all }
    }

    void checkSecrets(String step, String text) {
        credentials.each { id, pair ->
            if (pair[1] && text.contains(pair[1])) {
                violations << "${step}: the secret of credential '${id}' is in the ${step} string itself".toString()
            }
        }
    }
}

abstract class PipelineScript extends Script {
    Recorder getRecorder() { binding.getVariable('__recorder') as Recorder }

    Object withVars(Map vars, Closure body) {
        Map saved = [:]
        vars.each { k, v ->
            saved[k] = recorder.env.containsKey(k) ? recorder.env[k] : null
            recorder.env[k] = v
            binding.setVariable(k, v)  // what a Jenkinsfile's "${NAME}" would see
        }
        try {
            return body.call()
        } finally {
            saved.each { k, v ->
                if (v == null) { recorder.env.remove(k); binding.variables.remove(k) } else { recorder.env[k] = v; binding.setVariable(k, v) }
            }
        }
    }

    def invokeMethod(String name, Object args) {
        List a = args as List
        Recorder r = recorder
        switch (name) {
            case 'sh':
                Map spec = a[0] instanceof Map ? a[0] as Map : [script: a[0].toString()]
                String script = spec.script.toString()
                r.checkSecrets('sh', script)
                String expanded = r.expand(script)
                r.calls << [step: 'sh', script: script, expanded: expanded, label: spec.label?.toString(),
                            env: new TreeMap(r.env)]
                def failing = r.failStages.find { expanded.endsWith("run \"${it}\"") || expanded.endsWith("run ${it}") }
                if (failing) {
                    throw new HarnessError("script returned exit code 1 (tfgov ${failing})")
                }
                return ''
            case 'echo':
                r.checkSecrets('echo', a[0].toString())
                r.calls << [step: 'echo', message: a[0].toString()]
                return null
            case 'stage':
                r.calls << [step: 'stage', name: a[0].toString()]
                return (a[1] as Closure).call()
            case 'node':
                r.calls << [step: 'node']
                return (a[-1] as Closure).call()
            case 'checkout':
                r.calls << [step: 'checkout']
                return null
            case 'withEnv':
                List pairs = (a[0] as List).collect { it.toString() }
                r.calls << [step: 'withEnv', vars: pairs]
                Map vars = pairs.collectEntries { String p -> def i = p.indexOf('='); [(p.substring(0, i)): p.substring(i + 1)] }
                return withVars(vars, a[1] as Closure)
            case 'usernamePassword':
                return [kind: 'usernamePassword'] + (a[0] as Map)
            case 'string':
                return [kind: 'string'] + (a[0] as Map)
            case 'withCredentials':
                Map vars = [:]
                (a[0] as List).each { Map b ->
                    List pair = r.credentials[b.credentialsId]
                    if (pair == null) {
                        throw new HarnessError("no credential '${b.credentialsId}'")
                    }
                    if (b.kind == 'string') {
                        vars[b.variable] = pair[-1]  // a secret-text credential: its one value
                    } else {
                        vars[b.usernameVariable] = pair[0]
                        vars[b.passwordVariable] = pair[1]
                    }
                }
                r.calls << [step: 'withCredentials', ids: (a[0] as List).collect { it.credentialsId }, variables: vars.keySet() as List]
                return withVars(vars, a[1] as Closure)
            case 'archiveArtifacts':
                r.calls << [step: 'archiveArtifacts'] + (a[0] as Map).collectEntries { k, v -> [(k): v.toString()] }
                return null
            case 'junit':
                r.calls << [step: 'junit'] + (a[0] as Map).collectEntries { k, v -> [(k): v.toString()] }
                return null
            case 'error':
                r.calls << [step: 'error', message: a[0].toString()]
                throw new HarnessError(a[0].toString())
            case 'catchError':
                r.calls << [step: 'catchError'] + (a[0] as Map)
                try {
                    return (a[1] as Closure).call()
                } catch (HarnessError e) {
                    r.calls << [step: 'caught', message: e.message, result: (a[0] as Map).buildResult]
                    return null
                }
        }
        if (binding.hasVariable(name) && binding.getVariable(name) instanceof Script) {
            return (binding.getVariable(name) as Script).invokeMethod('call', args)  // a global var of the library
        }
        return super.invokeMethod(name, args)
    }
}

def library = new File(args[0])
def jenkinsfile = new File(args[1])
def recorder = new Recorder()
for (int i = 2; i < args.length; i++) {
    if (args[i] == '--secret') {
        def (id, pair) = args[++i].split('=', 2) as List
        recorder.credentials[id] = pair.split(':', 2) as List
    } else if (args[i] == '--fail') {
        recorder.failStages << args[++i]
    }
}

def binding = new Binding()
binding.setVariable('__recorder', recorder)
binding.setVariable('env', recorder.env)
binding.setVariable('scm', [kind: 'scm'])
// Docker Pipeline's global: docker.image(NAME).inside { ... } runs the block in that image.
binding.setVariable('docker', [image: { String name ->
    [inside: { Closure body ->
        recorder.calls << [step: 'docker.inside', image: name]
        body.call()
    }]
}])
def config = new CompilerConfiguration()
config.scriptBaseClass = PipelineScript.name
def shell = new GroovyShell(this.class.classLoader, binding, config)
new File(library, 'vars').listFiles().findAll { it.name.endsWith('.groovy') }.sort { it.name }.each {
    binding.setVariable(it.name - '.groovy', shell.parse(it))
}
String error = null
try {
    shell.parse(jenkinsfile).run()
} catch (HarnessError e) {
    error = e.message
}
println JsonOutput.toJson([calls: recorder.calls, error: error, violations: recorder.violations])
